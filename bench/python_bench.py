#!/usr/bin/env python3
"""python_bench.py: sharded_bench's workload through the Python package (kvpack.Client over
libkvpack.so), to measure what the binding costs. Same shape (32 layers, 8 KV heads x 128,
16 tokens, bf16: 2 MiB), --batch blocks per call from --concurrency threads, put then get;
prints the same phase lines.

  KVPACK_LIBRARY=bazel-bin/client/libkvpack.so PYTHONPATH=python \
      python3 bench/python_bench.py --targets=127.0.0.1:50051 --blocks=512 --batch=8
"""
import argparse
import concurrent.futures
import time

import numpy as np

import kvpack


def phase(name, calls, concurrency, call_bytes, op):
    latencies = []

    def timed(i):
        t0 = time.perf_counter()
        op(i)
        return time.perf_counter() - t0

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        latencies = sorted(pool.map(timed, range(calls)))
    seconds = time.perf_counter() - start
    pct = lambda p: latencies[max(0, min(len(latencies) - 1, int(round(p / 100 * len(latencies)
                                                                      + 0.5)) - 1))] * 1e3
    print(f"{name}: {calls * call_bytes / seconds / 1e9:.3f} GB/s  p50 {pct(50):.3f} ms  "
          f"p99 {pct(99):.3f} ms  ({calls} ops, {seconds:.3f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="127.0.0.1:50051")
    ap.add_argument("--blocks", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--codec", default=None)
    ap.add_argument("--decode", default="server", choices=["server", "local"])
    args = ap.parse_args()
    if args.batch <= 0 or args.blocks % args.batch:
        ap.error("--blocks must be a multiple of a non-zero --batch")

    rng = np.random.default_rng(1)
    f32 = rng.standard_normal((16, 32, 2, 16, 8, 128), dtype=np.float32)
    pool = [(f32[i].view(np.uint32) >> 16).astype(np.uint16) for i in range(16)]
    client = kvpack.Client(args.targets.split(","), timeout=120)
    ns = "python-bench"
    run = time.time_ns()
    key = lambda i: f"{run:x}-{i}".encode()
    calls = args.blocks // args.batch
    call_bytes = pool[0].nbytes * args.batch

    def put(c):
        idx = range(c * args.batch, (c + 1) * args.batch)
        client.put(ns, [key(i) for i in idx], [pool[i % 16] for i in idx], codec=args.codec,
                   dtype="bf16")

    def get(c):
        idx = range(c * args.batch, (c + 1) * args.batch)
        got = client.get(ns, [key(i) for i in idx], decode=args.decode)
        assert all(g is not None for g in got)

    print(f"{len(client.stats())} shard(s), {args.blocks} blocks of "
          f"{pool[0].nbytes / 2**20:.2f} MiB, batch "
          f"{args.batch}, concurrency {args.concurrency}, codec {args.codec or '(default)'}")
    phase("put", calls, args.concurrency, call_bytes, put)
    phase("get", calls, args.concurrency, call_bytes, get)
    client.delete(ns, [key(i) for i in range(args.blocks)])


if __name__ == "__main__":
    main()
