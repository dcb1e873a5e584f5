#!/usr/bin/env python3
"""Cold start of each Lambda function binary, measured locally (docs/BENCHMARKS.md).

For each function: start its release `bootstrap` (as infra/lambda/build.sh built it for
this machine's architecture) against `cargo lambda watch --only-lambda-apis`, send one
event through the emulator's Invoke API, and time process start -> first event answered.
That includes everything a Lambda cold start runs in our code: reading the settings,
connecting to Postgres, checking the bucket, building clients; not Lambda's own sandbox
start or the download of the zip. The events are the cheapest real work each function
does: a probe (upload), a kind the function refuses after start-up (the other stages:
the answer is a classified error), GET /v1/health (api), GET /healthz (receiver).

    python3 infra/lambda/cold-start.py [--runs 5] [--arch x86_64]
    python3 infra/lambda/cold-start.py --binaries target/debug    # rainlogs-<fn> there

Needs the local stack (.rainlogs/env, or RAINLOGS_ENV_FILE) and the master keyring
settings the stack writes; prints one line per function: median and min of the runs.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def envelope(kind, payload):
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"v": 1, "id": str(uuid.uuid4()), "queue": "coldstart", "kind": kind,
            "payload": payload, "attempt": 1, "max_attempts": 1, "enqueued_at": now,
            "trace_id": "coldstart"}


def url_event(path):
    return {"version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
            "headers": {"host": "abc.lambda-url.eu-central-1.on.aws"},
            "requestContext": {"accountId": "anonymous", "apiId": "abc",
                               "domainName": "abc.lambda-url.eu-central-1.on.aws",
                               "domainPrefix": "abc",
                               "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "198.51.100.7", "userAgent": "coldstart"},
                               "requestId": "req", "routeKey": "$default", "stage": "$default",
                               "time": "07/Dec/2026:16:00:00 +0000", "timeEpoch": 1796659200000},
            "isBase64Encoded": False}


EVENTS = {
    "rainlogs-upload": lambda: envelope("upload.probe", {"note": "cold start"}),
    "rainlogs-fetch": lambda: envelope("fetch.coldstart", {}),
    "rainlogs-encrypt": lambda: envelope("encrypt.coldstart", {}),
    "rainlogs-prune": lambda: envelope("prune.coldstart", {}),
    "rainlogs-kms": lambda: envelope("kms.coldstart", {}),
    "rainlogs-api": lambda: url_event("/v1/health"),
    "rainlogs-receiver": lambda: url_event("/healthz"),
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, deadline):
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"cargo lambda watch is not listening on {port}")


def invoke(port, name, event):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/2015-03-31/functions/{name}/invocations",
        data=json.dumps(event).encode(), method="POST",
        headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:  # a function error: still an answered event
        return e.code, e.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--arch", default="x86_64")
    ap.add_argument("--binaries", help="a directory of rainlogs-<function> binaries instead of the zips' bootstraps")
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    tools = subprocess.check_output(["bash", str(ROOT / "infra/dev/deploy-tools.sh")], text=True).strip()
    env_file = os.environ.get("RAINLOGS_ENV_FILE", str(ROOT / ".rainlogs/env"))
    port = free_port()
    watch = subprocess.Popen([f"{tools}/cargo-lambda", "lambda", "watch", "--only-lambda-apis",
                              "--invoke-address", "127.0.0.1", "--invoke-port", str(port)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, time.monotonic() + 60)
        print(f"{'function':20} {'median ms':>10} {'min ms':>8}  answer")
        for name, make in EVENTS.items():
            binary = (Path(args.binaries) / name if args.binaries
                      else target / "lambda" / args.arch / name / "bootstrap")
            if not binary.is_file():
                print(f"{name:20} {'-':>10} {'-':>8}  no {binary}")
                continue
            times, answer = [], ""
            for _ in range(args.runs):
                t0 = time.monotonic()
                child = subprocess.Popen(
                    [str(binary)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    env={"PATH": os.environ["PATH"], "RAINLOGS_ENV_FILE": env_file,
                         "AWS_LAMBDA_RUNTIME_API": f"http://127.0.0.1:{port}/.rt/{name}",
                         "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "1",
                         "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512"})
                try:
                    status, body = invoke(port, name, make())
                    times.append((time.monotonic() - t0) * 1000)
                    answer = f"HTTP {status} {body[:60]!r}"
                finally:
                    child.kill()
                    child.wait()
            print(f"{name:20} {statistics.median(times):10.0f} {min(times):8.0f}  {answer}")
    finally:
        watch.kill()
        watch.wait()


if __name__ == "__main__":
    main()
