#!/usr/bin/env python3
"""Independent decryptor for Rainlogs sealed objects, written from docs/FORMAT.md alone.

It exists to check that FORMAT.md is complete: it shares no code with the Rust
implementation. Needs the `cryptography` package and the `zstd` command.

    python3 docs/tools/sealed_decrypt.py OBJECT KEYFILE > out.ndjson
    python3 docs/tools/sealed_decrypt.py --check-vectors shared/sealed/tests/vectors
"""
import hashlib
import hmac
import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.exceptions import InvalidTag


class Invalid(Exception):
    pass


def hkdf(salt, ikm, info):
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()  # HKDF-Extract
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def open_object(data: bytes, key_file: dict) -> bytes:
    if len(data) < 178:
        raise Invalid("truncated header")
    h = data[:178]
    if h[0:8] != b"RLSEALED":
        raise Invalid("not sealed")
    if h[8] != 1 or h[9] != 1 or struct.unpack(">H", h[10:12])[0] != 178:
        raise Invalid("unsupported version/algorithm/header length")
    (chunk,) = struct.unpack(">I", h[12:16])
    if not 64 <= chunk <= 16 * 1024 * 1024:
        raise Invalid("chunk size")
    tenant = uuid.UUID(bytes=h[16:32])
    (version,) = struct.unpack(">I", h[32:36])
    start, end = struct.unpack(">qq", h[52:68])
    # FORMAT.md §3: instants 1970-01-01T00:00:00Z ..= 9999-12-31T23:59:59.999999Z.
    if not (0 <= start < end <= 253402300799999999):
        raise Invalid("window")
    salt = h[68:84]
    if struct.unpack(">H", h[84:86])[0] != 60:
        raise Invalid("wrapped key length")
    wrapped = h[86:146]
    tag = h[146:178]
    if str(tenant) != key_file["tenant_id"] or version != key_file["version"]:
        raise Invalid("key file is for another tenant/version")
    tk = bytes.fromhex(key_file["key_hex"])
    binding = h[16:68]
    try:
        dk = AESGCM(tk).decrypt(wrapped[:12], wrapped[12:], b"rainlogs sealed v1 data-key\0" + binding)
    except InvalidTag:
        raise Invalid("header tampered (data key does not unwrap)")
    k_hdr = hkdf(salt, dk, b"rainlogs sealed v1 header-tag")
    k_pay = hkdf(salt, dk, b"rainlogs sealed v1 payload")
    if not hmac.compare_digest(hmac.new(k_hdr, h[:146], hashlib.sha256).digest(), tag):
        raise Invalid("header tampered (tag)")
    aead = AESGCM(k_pay)
    body_and_footer = data[178:]
    payload = bytearray()
    pos, i = 0, 0
    while True:
        rest = len(body_and_footer) - pos
        nonce_nf = b"\0" * 7 + struct.pack(">I", i) + b"\0"
        if rest > chunk + 72:
            seg = body_and_footer[pos : pos + chunk + 16]
            try:
                payload += aead.decrypt(nonce_nf, seg, tag)
            except InvalidTag:
                raise Invalid(f"chunk {i} fails authentication")
            pos += chunk + 16
            i += 1
            continue
        if rest < 72:
            raise Invalid("truncated")
        final = body_and_footer[pos:-8]
        footer = body_and_footer[-8:]
        (declared,) = struct.unpack(">Q", footer)
        if declared != len(body_and_footer) - 8:
            raise Invalid("truncated (footer length mismatch)")
        nonce_f = b"\0" * 7 + struct.pack(">I", i) + b"\1"
        try:
            plain = aead.decrypt(nonce_f, final, tag + footer)
        except InvalidTag:
            raise Invalid(f"final chunk {i} fails authentication")
        payload += plain
        break
    z, trailer = bytes(payload[:-48]), bytes(payload[-48:])
    records, length = struct.unpack(">QQ", trailer[:16])
    out = subprocess.run(["zstd", "-d", "-q", "-c"], input=z, capture_output=True, check=True).stdout
    nl = out.count(b"\n") + (1 if out and not out.endswith(b"\n") else 0)
    if nl != records or len(out) != length or hashlib.sha256(out).digest() != trailer[16:]:
        raise Invalid("trailer mismatch")
    return out


def check_vectors(d: Path) -> int:
    doc = json.loads((d / "vectors.json").read_text())
    key = json.loads((d / doc["tenant_key_file"]).read_text())
    failures = 0
    for v in doc["vectors"]:
        data = (d / f"{v['name']}.sealed").read_bytes()
        try:
            out = open_object(data, key)
            ok = v["expect_error"] is None and out == (d / f"{v['name']}.ndjson").read_bytes()
            print(f"{v['name']}: opened, {'as expected' if ok else 'UNEXPECTED'}")
        except Invalid as e:
            ok = v["expect_error"] is not None
            print(f"{v['name']}: refused ({e}), {'as expected' if ok else 'UNEXPECTED'}")
        failures += not ok
    return failures


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check-vectors":
        sys.exit(1 if check_vectors(Path(sys.argv[2])) else 0)
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.stdout.buffer.write(open_object(Path(sys.argv[1]).read_bytes(), json.loads(Path(sys.argv[2]).read_text())))
