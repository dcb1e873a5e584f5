"""Python RQ on the same Redis and workload as the Rainlogs dispatcher benchmark.

Enqueues COUNT no-op jobs (pipelined, like the Rust side's batched enqueue), then
drains them with one in-process SimpleWorker (RQ's fastest worker: no fork per job)
and prints `rq_throughput_tasks_per_s=<n>`. Called by
`cargo bench -p rainlogs-dispatcher --bench dispatch`; runnable alone:

    pip install rq
    python3 bench/rq/bench_rq.py --count 20000 --redis-url redis://127.0.0.1:6379/0
"""

import argparse
import logging
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    from redis import Redis
    from rq import Queue, SimpleWorker
except ImportError as e:  # reported by the Rust bench as "skipped"
    sys.stderr.write(f"python rq not installed ({e}); pip install rq\n")
    sys.exit(3)

from rq_noop import noop


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--prefix", default="rlbench")
    args = ap.parse_args()

    conn = Redis.from_url(args.redis_url)
    name = "rlbench-" + args.prefix.replace(":", "-")
    q = Queue(name, connection=conn)
    q.empty()

    t0 = time.perf_counter()
    batch = 1000
    for start in range(0, args.count, batch):
        n = min(batch, args.count - start)
        data = [Queue.prepare_data(noop, result_ttl=0, ttl=3600) for _ in range(n)]
        with conn.pipeline() as pipe:
            q.enqueue_many(data, pipeline=pipe)
            pipe.execute()
    enq = time.perf_counter() - t0
    print(f"rq enqueue: {args.count} jobs in {enq:.2f} s = {args.count / enq:.0f} jobs/s")

    logging.getLogger("rq.worker").setLevel(logging.WARNING)
    worker = SimpleWorker([q], connection=conn)
    t1 = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING", with_scheduler=False)
    took = time.perf_counter() - t1
    rate = args.count / took
    print(f"rq throughput: {args.count} no-op jobs drained in {took:.2f} s = {rate:.0f} jobs/s (one SimpleWorker, rq {__import__('rq').__version__})")
    print(f"rq_throughput_tasks_per_s={rate:.0f}")
    q.delete(delete_jobs=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
