#!/usr/bin/env python3
"""A Logpush HTTP-destination client written from Cloudflare's documentation alone.

It does what Cloudflare's Logpush does for an HTTP destination, as the docs describe
it (developers.cloudflare.com/logs/get-started/enable-destinations/http/), and nothing
Rainlogs-specific: it takes the destination URL exactly as an operator gives it to a
Logpush job, turns every `header_NAME=value` query parameter into a request header
(and leaves the other parameters in the URL), gzips NDJSON and POSTs it over HTTPS.
`--validate` sends the validation upload Cloudflare sends when a job is created: the
gzip of `{"content":"tests"}`. On a 5xx, 429 or a broken connection it retries with
back-off, honouring Retry-After, like a job does; a 4xx other than 429 is final.

Standard library only, so it runs anywhere Python 3 does. Exit code 0 when the last
answer is 2xx, 1 otherwise; the answers are printed one JSON line each.

    logpush_client.py --destination 'https://logs.example.com/push/ID?header_Authorization=Bearer%20S' \
        [--cafile ca.pem] (--validate | FILE ...)   # FILE of NDJSON, '-' for stdin
"""

import argparse
import gzip
import json
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def split_destination(destination):
    """The URL to POST to and the headers its `header_*` parameters ask for."""
    parts = urllib.parse.urlsplit(destination)
    if parts.scheme not in ("https", "http"):
        raise SystemExit(f"destination must be an https:// URL, not {parts.scheme!r}")
    headers, kept = {}, []
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name.startswith("header_") and len(name) > len("header_"):
            headers[name[len("header_"):]] = value
        else:
            kept.append((name, value))
    url = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(kept), "")
    )
    return url, headers


def post(url, headers, body, context, attempts, backoff):
    """POSTs one gzip body, retrying what a Logpush job retries; returns (status, text)."""
    status, text = None, ""
    for attempt in range(attempts):
        request = urllib.request.Request(url, data=body, method="POST")
        for name, value in headers.items():
            request.add_header(name, value)
        request.add_header("Content-Type", "application/json")
        request.add_header("Content-Encoding", "gzip")
        wait = backoff * (2 ** attempt)
        try:
            with urllib.request.urlopen(request, context=context, timeout=60) as resp:
                return resp.status, resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode("utf-8", "replace")
            if not (e.code >= 500 or e.code == 429):
                return status, text
            retry_after = e.headers.get("Retry-After")
            if retry_after and retry_after.isdigit():
                wait = min(int(retry_after), 30)
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            status, text = None, str(e)
        if attempt + 1 < attempts:
            time.sleep(wait)
    return status, text


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--destination", required=True, help="the job's destination URL")
    ap.add_argument("--cafile", help="trust this CA bundle (a test certificate)")
    ap.add_argument("--validate", action="store_true", help="send the validation upload")
    ap.add_argument("--attempts", type=int, default=5)
    ap.add_argument("--backoff", type=float, default=0.5, help="first retry pause, seconds")
    ap.add_argument("files", nargs="*", help="NDJSON files, one batch each ('-': stdin)")
    args = ap.parse_args()
    if args.validate == bool(args.files):
        ap.error("give --validate or NDJSON files, not both")

    url, headers = split_destination(args.destination)
    context = ssl.create_default_context(cafile=args.cafile)
    if args.validate:
        batches = [json.dumps({"content": "tests"}, separators=(",", ":")).encode()]
    else:
        batches = []
        for name in args.files:
            if name == "-":
                batches.append(sys.stdin.buffer.read())
            else:
                with open(name, "rb") as f:
                    batches.append(f.read())

    ok = True
    for body in batches:
        status, text = post(url, headers, gzip.compress(body), context, args.attempts, args.backoff)
        print(json.dumps({"status": status, "answer": text}))
        ok = ok and status is not None and 200 <= status < 300
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
