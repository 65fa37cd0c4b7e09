"""The IAM rate a sweep reaches under IAM's request quota, against the quota itself.

The proxy of ``tests/support/faults.py`` models IAM's per-account token bucket: T calls
per second (burst T); an IAM call finding it empty is answered ``Throttling``. One sweep
rotates N users' access keys end to end (create, verify, last-used, deactivate, delete)
at T = 20 and T = 40, once with no ``max_iam_calls_per_second`` (the pace adapts to the
throttling) and once with it set to T. Prints the useful IAM calls per second (answered,
not throttled, over the sweep's wall time) as a share of T, the throttled answers and the
rotations that did not complete. Target: >= 90 % of T with 0 failed rotations. Not part of
the test run.

    .venv/bin/python -m benchmarks.iam_rate [--users 200] [--latency-ms 20] [--quota 20 40]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from benchmarks.sweep_vs_script import POLICY, Server, rotator_sweep, seed
from tests.support.moto import MotoSandbox

STS = {"GetCallerIdentity"}


def one(server: Server, users: int, concurrency: int, ceiling: float | None) -> str:
    sandbox = MotoSandbox(server.upstream)
    tmp = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    seed(sandbox, users)
    config = tmp / "rotator.toml"
    policy = POLICY.format(tmp=tmp, concurrency=concurrency)
    if ceiling is not None:
        policy += f"\n[aws]\nmax_iam_calls_per_second = {ceiling}\n"
    config.write_text(policy)
    server.ask("reset")
    wall = time.perf_counter()
    completed = asyncio.run(rotator_sweep(config))
    wall = time.perf_counter() - wall
    counts = server.counts()
    throttled = int(server.ask("throttled"))
    iam = sum(c for action, c in counts.items() if action not in STS)
    useful = (iam - throttled) / wall
    return f"{useful:6.1f} IAM calls/s, {throttled:4d} throttled, {users - completed} not completed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--quota", type=float, nargs="+", default=[20.0, 40.0])
    args = parser.parse_args()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
    )
    print(f"users={args.users} latency={args.latency_ms:g}ms concurrency={args.concurrency}")
    for quota in args.quota:
        for ceiling in (None, quota):
            server = Server(args.latency_ms / 1000, 0.0, quota)
            os.environ["AWS_ENDPOINT_URL"] = server.proxy_url
            try:
                line = one(server, args.users, args.concurrency, ceiling)
            finally:
                server.close()
            rate = float(line.split()[0])
            setting = "adaptive (no ceiling)" if ceiling is None else f"ceiling {ceiling:g}/s"
            print(f"T={quota:g}/s {setting:22s} {line}  = {rate / quota:4.0%} of T (target >= 90%)")


if __name__ == "__main__":
    main()
