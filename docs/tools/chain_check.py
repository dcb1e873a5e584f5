#!/usr/bin/env python3
"""Independent checker of Rainlogs chain evidence, written from docs/CHAIN.md alone.

It imports nothing of Rainlogs. Standard library only (hashlib, hmac, json).

    chain_check.py BUNDLE [--chain-key-file F ...] [--expect expected.json]
        Check an evidence bundle (`rainlogs evidence export`): chain links (SHA-256 for
        version 1, HMAC-SHA-256 for version 2 when a chain key is available), continuity,
        checkpoints, links against window states, deletion receipts against retention
        and legal hold, catalog against links, the bucket listing against the catalog,
        and copied objects against their hashes. Prints one finding a line (JSON).
        Exit 0 clean, 1 findings (or, with --expect, 0 when exactly the expected
        findings were found, 1 otherwise).
    chain_check.py --check-vectors DIR
        Rebuild every vector's input bytes from its fields, compare them with the
        committed hex, and check its hash or MAC.
    chain_check.py --conformance DIR
        Check every bundle under DIR against its expected.json.
"""

import argparse
import glob
import hashlib
import hmac
import json
import os
import re
import struct
import sys
import uuid

V1_DOMAIN = b"rainlogs.chain.v1"
V2_DOMAIN = b"rainlogs.chain.v2"
GENESIS_DOMAIN = b"rainlogs.chain.v1.genesis"
CHAIN_KEY_LABEL = b"rainlogs.chain.v2.key"
CHECKPOINT_FORMAT = "rainlogs.checkpoint.v1"
CHAIN_KEY_FILE_FORMAT = "rainlogs-chain-key-v1"
DAY_US = 86_400 * 1_000_000


def uuid_bytes(text):
    # RFC 4122 byte order: the order of the hex digits (docs/CHAIN.md "Encodings").
    return uuid.UUID(text).bytes


def h32(text):
    if text is None:
        return b"\x00" * 32
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise ValueError("hash is not 32 bytes")
    return raw


def genesis(zone_id):
    return hashlib.sha256(GENESIS_DOMAIN + uuid_bytes(zone_id)).digest()


def content(link):
    """Kind and content fields, derived from the link row alone."""
    if link.get("object_sha256") is not None:
        return 1, h32(link["object_sha256"]), h32(link["plaintext_sha256"]), link["record_count"]
    return 2, b"\x00" * 32, b"\x00" * 32, link["record_count"]


def link_input(zone_id, link):
    kind, obj, plain, records = content(link)
    tail = (
        struct.pack(">Q", link["seq"])
        + h32(link["prev_hash"])
        + struct.pack(">qq", link["window_start_us"], link["window_end_us"])
        + bytes([kind])
        + obj
        + plain
        + struct.pack(">Q", records)
    )
    if link["version"] == 1:
        return V1_DOMAIN + uuid_bytes(zone_id) + tail
    return V2_DOMAIN + uuid_bytes(zone_id) + struct.pack(">I", link["key_version"]) + tail


def chain_key_from_tenant_key(tenant_key):
    return hmac.new(tenant_key, CHAIN_KEY_LABEL, hashlib.sha256).digest()


def checkpoint_input(c):
    first = -1 if c["first_keyed_seq"] is None else c["first_keyed_seq"]
    return (
        CHECKPOINT_FORMAT.encode()
        + uuid_bytes(c["tenant_id"])
        + uuid_bytes(c["zone_id"])
        + struct.pack(">IQ", c["key_version"], c["seq"])
        + h32(c["link_hash"])
        + struct.pack(">qq", first, c["created_at_us"])
    )


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_chain_keys(paths):
    keys = {}
    for p in paths:
        with open(p, encoding="utf-8") as f:
            k = json.load(f)
        if k.get("format") != CHAIN_KEY_FILE_FORMAT:
            raise SystemExit(f"{p}: not a chain key file")
        keys[(k["tenant_id"], k["version"])] = bytes.fromhex(k["key_hex"])
    return keys


ARCHIVE_KEY = re.compile(
    r"^(?:.*/)?archive/(?P<tenant>[0-9a-f-]{36})/(?P<zone>[0-9a-f-]{36})/\d{4}/\d{2}/\d{2}/"
    r"(?P<start>\d{8}T\d{6}Z)_(?P<end>\d{8}T\d{6}Z)\.sealed$"
)


def key_bounds_us(key):
    m = ARCHIVE_KEY.match(key)
    if not m:
        return None
    import datetime

    def us(s):
        t = datetime.datetime.strptime(s, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        return int(t.timestamp()) * 1_000_000

    return us(m["start"]), us(m["end"])


def check_zone(bundle, tenant_id, z, keys, emit):
    zone_id = z["zone_id"]
    zdir = os.path.join(bundle, "zones", zone_id)
    links = read_lines(os.path.join(zdir, "chain.jsonl"))
    windows = {w["window_id"]: w for w in read_lines(os.path.join(zdir, "windows.jsonl"))}
    receipts = read_lines(os.path.join(zdir, "receipts.jsonl"))
    listing = {o["key"]: o for o in read_lines(os.path.join(zdir, "objects.jsonl"))}

    def find(kind, **fields):
        emit(dict(type=kind, zone_id=zone_id, **fields))

    # Checkpoints: MAC, then by seq.
    checkpoints = {}
    for path in sorted(glob.glob(os.path.join(zdir, "checkpoints", "*.json"))):
        name = os.path.basename(path)
        try:
            with open(path, encoding="utf-8") as f:
                c = json.load(f)
            if c.get("format") != CHECKPOINT_FORMAT:
                raise ValueError("not a checkpoint")
            if c["zone_id"] != zone_id or c["tenant_id"] != tenant_id or name != f"{c['seq']:020}.json":
                raise ValueError("names another zone or seq than its key")
            key = keys.get((tenant_id, c["key_version"]))
            if key is None:
                raise ValueError(f"chain key version {c['key_version']} unavailable: MAC not checked")
            mac = hmac.new(key, checkpoint_input(c), hashlib.sha256).digest()
            if not hmac.compare_digest(mac, bytes.fromhex(c["mac"])):
                raise ValueError("MAC does not verify")
            checkpoints[c["seq"]] = c
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
            find("checkpoint_invalid", object_key=name, detail=str(e))
    unkeyed_limit = None
    if checkpoints:
        oldest = checkpoints[min(checkpoints)]
        fk = oldest["first_keyed_seq"]
        unkeyed_limit = oldest["seq"] if fk is None else fk - 1

    # The chain, link by link.
    expected_seq, prev, seen_v2, first_v2, last_v1 = 0, genesis(zone_id), False, None, None
    unavailable, unkeyed_after, linked = set(), [], {}
    for link in sorted(links, key=lambda l: l["seq"]):
        seq = link["seq"]
        linked[link["window_id"]] = link
        after_gap = seq != expected_seq
        if after_gap:
            find("chain_gap", seq=seq, window_id=link["window_id"], missing_from=expected_seq, missing_to=seq - 1)
        if link["version"] == 1:
            if seen_v2:
                find("chain_link_broken", seq=seq, window_id=link["window_id"], reason="unkeyed_after_keyed")
            last_v1 = seq
            if unkeyed_limit is not None and seq > unkeyed_limit:
                unkeyed_after.append(seq)
        elif link["version"] == 2:
            seen_v2 = True
            first_v2 = seq if first_v2 is None else first_v2
        if not after_gap and prev is not None and h32(link["prev_hash"]) != prev:
            find("chain_link_broken", seq=seq, window_id=link["window_id"], reason="prev_hash_mismatch")
        try:
            data = link_input(zone_id, link)
            if link["version"] == 1:
                ok = hashlib.sha256(data).digest() == h32(link["link_hash"])
            elif link["version"] == 2:
                key = keys.get((tenant_id, link["key_version"]))
                if key is None:
                    if link["key_version"] not in unavailable:
                        unavailable.add(link["key_version"])
                        find("chain_key_unavailable", key_version=link["key_version"], seq=seq)
                    ok = True
                else:
                    mac = hmac.new(key, data, hashlib.sha256).digest()
                    ok = hmac.compare_digest(mac, h32(link["link_hash"]))
            else:
                raise ValueError(f"unknown version {link['version']}")
            if not ok:
                find("chain_link_broken", seq=seq, window_id=link["window_id"], reason="hash_mismatch")
        except (ValueError, KeyError, TypeError) as e:
            find("chain_link_broken", seq=seq, window_id=link["window_id"], reason="malformed", detail=str(e))
        c = checkpoints.get(seq)
        if c is not None and c["link_hash"] != link["link_hash"]:
            find("checkpoint_mismatch", seq=seq, window_id=link["window_id"])
        prev = bytes.fromhex(link["link_hash"]) if len(link["link_hash"]) == 64 else None
        expected_seq = seq + 1
    tip = expected_seq - 1 if links else None
    if checkpoints and (tip is None or tip < max(checkpoints)):
        find("chain_behind_checkpoint", seq=max(checkpoints), tip_seq=tip)
    if unkeyed_after:
        find("chain_unkeyed", seq=unkeyed_after[0], to_seq=unkeyed_after[-1])
    if last_v1 is not None and first_v2 is None and not checkpoints:
        find("chain_unkeyed", seq=0, to_seq=last_v1)

    # Windows against their links, catalog rows, receipts and the bucket.
    receipts_by_window = {}
    for r in receipts:
        if r.get("window_id") is not None:
            receipts_by_window.setdefault(r["window_id"], []).append(r)
    catalog_keys = set()
    for wid, w in sorted(windows.items()):
        state, link = w["state"], linked.get(wid)
        if link is not None and (link["window_start_us"], link["window_end_us"]) != (w["start_us"], w["end_us"]):
            find("chain_link_broken", seq=link["seq"], window_id=wid, reason="window_bounds_differ")
        if state in ("archived", "pruned", "empty") and link is None:
            find("link_missing", window_id=wid, state=state)
        elif link is not None:
            kind = 1 if link.get("object_sha256") is not None else 2
            if (state in ("archived", "pruned") and kind != 1) or (state == "empty" and kind != 2) or state not in (
                "archived",
                "pruned",
                "empty",
            ):
                find("link_state_mismatch", window_id=wid, state=state, seq=link["seq"])
        key = w.get("object_key")
        if key is not None:
            catalog_keys.add(key)
        if state in ("archived", "pruned") and key is None:
            find("catalog_row_missing", window_id=wid, state=state)
        if state not in ("archived", "pruned") and key is not None:
            find("catalog_row_unexpected", window_id=wid, state=state, object_key=key)
        if key is not None and link is not None and link.get("object_sha256") is not None:
            if w.get("object_sha256") != link["object_sha256"]:
                find("catalog_link_mismatch", window_id=wid, object_key=key)
        if state == "archived" and key is not None:
            listed = listing.get(key)
            if listed is None:
                find("object_missing", window_id=wid, object_key=key)
            elif w.get("size_bytes") is not None and listed["size"] != w["size_bytes"]:
                find("object_size_mismatch", window_id=wid, object_key=key)
            copy = os.path.join(bundle, "objects", key)
            if os.path.exists(copy):
                with open(copy, "rb") as f:
                    actual = hashlib.sha256(f.read()).hexdigest()
                if actual != w.get("object_sha256"):
                    find("object_hash_mismatch", window_id=wid, object_key=key, actual_sha256=actual)
        if state == "pruned":
            if key is not None and key in listing:
                find("pruned_object_present", window_id=wid, object_key=key)
            rs = receipts_by_window.get(wid, [])
            if not rs:
                find("pruned_without_receipt", window_id=wid)
            else:
                deleted = min(r["deleted_at_us"] for r in rs)
                if deleted <= w["end_us"] + z["retention_days"] * DAY_US:
                    find("receipt_inside_retention", window_id=wid, deleted_at_us=deleted)
                since = z.get("hold_since_us")
                if z["legal_hold"] and (since is None or deleted >= since):
                    find("receipt_under_hold", window_id=wid, deleted_at_us=deleted)
    # Objects the catalog does not know.
    by_bounds = {(w["start_us"], w["end_us"]): w for w in windows.values()}
    for key in sorted(listing):
        if key in catalog_keys:
            continue
        bounds = key_bounds_us(key)
        w = by_bounds.get(bounds) if bounds else None
        if w is not None:
            find("object_unexpected", window_id=w["window_id"], object_key=key, state=w["state"])
        else:
            find("object_unexpected", object_key=key, state=None)


def rfc3339_us(text):
    if text is None:
        return None
    import datetime

    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def check_bundle(bundle, key_files=()):
    with open(os.path.join(bundle, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    if manifest.get("format") != "rainlogs.evidence.v1":
        raise SystemExit(f"{bundle}: not a rainlogs.evidence.v1 bundle")
    keys = load_chain_keys(list(key_files) + sorted(glob.glob(os.path.join(bundle, "chain-keys", "*.json"))))
    findings = []
    for z in manifest["zones"]:
        z = dict(z, hold_since_us=rfc3339_us(z.get("hold_since")))
        check_zone(bundle, manifest["tenant_id"], z, keys, findings.append)
    return findings


def identity(f):
    """What names a finding for --expect: its type, zone and where it is."""
    where = f.get("window_id")
    if where is None:
        where = f.get("seq")
    if where is None:
        where = f.get("object_key")
    return (f["type"], f.get("zone_id"), where)


def compare(findings, expected):
    got = sorted(map(identity, findings), key=repr)
    want = sorted(map(identity, expected), key=repr)
    missing = [w for w in want if w not in got]
    extra = [g for g in got if g not in want]
    return missing, extra


def check_vectors(directory):
    with open(os.path.join(directory, "vectors.json"), encoding="utf-8") as f:
        vectors = json.load(f)
    failures = 0
    for v in vectors["vectors"]:
        kind = v["kind"]
        if kind == "genesis":
            data = GENESIS_DOMAIN + uuid_bytes(v["zone_id"])
            got = hashlib.sha256(data).digest()
        elif kind == "chain_key":
            data = CHAIN_KEY_LABEL
            got = chain_key_from_tenant_key(bytes.fromhex(v["tenant_key_hex"]))
        elif kind == "link":
            data = link_input(v["zone_id"], v["link"])
            if v["link"]["version"] == 1:
                got = hashlib.sha256(data).digest()
            else:
                got = hmac.new(bytes.fromhex(v["chain_key_hex"]), data, hashlib.sha256).digest()
        elif kind == "checkpoint":
            data = checkpoint_input(v["checkpoint"])
            got = hmac.new(bytes.fromhex(v["chain_key_hex"]), data, hashlib.sha256).digest()
        else:
            print(f"FAIL {v['name']}: unknown kind {kind}")
            failures += 1
            continue
        if data.hex() != v["input_hex"]:
            print(f"FAIL {v['name']}: input bytes differ from the committed hex")
            failures += 1
        elif got.hex() != v["expected_hex"]:
            print(f"FAIL {v['name']}: got {got.hex()}, expected {v['expected_hex']}")
            failures += 1
        else:
            print(f"ok   {v['name']}")
    print(f"{len(vectors['vectors']) - failures}/{len(vectors['vectors'])} vectors ok")
    return 0 if failures == 0 else 1


def conformance(directory):
    failures = 0
    bundles = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(directory, "*", "expected.json")))
    for b in bundles:
        with open(os.path.join(b, "expected.json"), encoding="utf-8") as f:
            expected = json.load(f)["findings"]
        missing, extra = compare(check_bundle(b), expected)
        name = os.path.basename(b)
        if missing or extra:
            failures += 1
            print(f"FAIL {name}: missing {missing}, unexpected {extra}")
        else:
            print(f"ok   {name}: {len(expected)} expected findings, all found, no other")
    print(f"{len(bundles) - failures}/{len(bundles)} conformance bundles ok")
    return 0 if failures == 0 and bundles else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?")
    ap.add_argument("--chain-key-file", action="append", default=[])
    ap.add_argument("--expect")
    ap.add_argument("--check-vectors")
    ap.add_argument("--conformance")
    a = ap.parse_args()
    if a.check_vectors:
        return check_vectors(a.check_vectors)
    if a.conformance:
        return conformance(a.conformance)
    if not a.bundle:
        ap.error("give a bundle directory, --check-vectors DIR or --conformance DIR")
    findings = check_bundle(a.bundle, a.chain_key_file)
    for f in findings:
        print(json.dumps(f, sort_keys=True))
    if a.expect:
        with open(a.expect, encoding="utf-8") as f:
            missing, extra = compare(findings, json.load(f)["findings"])
        for m in missing:
            print(f"expected but not found: {m}", file=sys.stderr)
        for e in extra:
            print(f"found but not expected: {e}", file=sys.stderr)
        return 0 if not missing and not extra else 1
    print(f"{len(findings)} findings", file=sys.stderr)
    return 0 if not findings else 1


if __name__ == "__main__":
    sys.exit(main())
