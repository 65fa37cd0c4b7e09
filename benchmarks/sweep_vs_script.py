"""rotator against a plain sequential boto3 script that follows the AWS sample's algorithm
(list keys, create, store, deactivate, delete; one user at a time), both against the same
moto server behind a proxy that adds a fixed latency to every AWS call, in the same run.

Prints, for each: wall time, CPU per user (this process's CPU: moto and the proxy run in a
child process), AWS calls per user (counted at the proxy) and the ratio of wall times.
rotator does more per user by design — it stores the secret as pending first, verifies the
new key with STS, checks last-used before deactivating and journals every step — and is
measured with all of that on. Not part of the test run.

    .venv/bin/python -m benchmarks.sweep_vs_script [--users 500] [--latency-ms 50]
        [--concurrency 64] [--propagation-s 0] [--profile FILE]

``--curve 100 500 2000`` runs only rotator, at each size (time, CPU and calls per user,
each against the smallest size's: 1.0x is linear).

``--profile FILE`` runs rotator's sweep under cProfile, writes the stats to FILE (read them
with ``python -m pstats FILE``) and prints the functions that took the most time of their
own: where rotator's CPU per user goes.

``--propagation-s N`` models IAM's eventual consistency: the proxy rejects an STS call
signed by an access key younger than N seconds (``InvalidClientTokenId``), as real IAM does
for a few seconds after CreateAccessKey; the script then sleeps and retries, as it must.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import boto3

from rotator import app
from rotator.settings import load_config
from tests.support.moto import MotoSandbox

POLICY = """
max_concurrency = {concurrency}
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
stream = "none"
[verify]
initial_delay = "1s"
attempts = 12
[[rules]]
name = "bench"
kind = "access-key"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/bench/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{user}}.json" }}
"""

# moto and the latency proxy in a child process (their own GIL). The child answers
# "counts" on stdin with the proxy's requests per action since the last "reset".
SERVE = """
import json, logging, sys, threading, time
from collections import Counter
from moto.server import ThreadedMotoServer
from tests.support.faults import FaultPlan, FaultProxy
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
latency, young, quota = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
proxy = FaultProxy(f"http://{host}:{port}", FaultPlan(latency=(latency, latency)))
if young > 0:
    proxy.reject_young_keys(young)
if quota > 0:
    proxy.limit_iam(quota)
proxy.start()
print(f"http://{host}:{port} {proxy.url}", flush=True)
base = throttled = 0
for line in sys.stdin:
    seen = proxy.actions_seen()
    if line.strip() == "reset":
        base = len(seen)
        throttled = proxy.counts()["throttled"]
        print("ok", flush=True)
    elif line.strip() == "throttled":
        print(proxy.counts()["throttled"] - throttled, flush=True)
    else:
        print(json.dumps(Counter(a for a in seen[base:] if a)), flush=True)
"""


class Server:
    """The child process: moto behind the latency proxy, and its call counter."""

    def __init__(self, latency: float, young: float, iam_quota: float = 0.0) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(latency), str(young), str(iam_quota)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.child.stdout is not None
        self.upstream, self.proxy_url = self.child.stdout.readline().split()

    def ask(self, what: str) -> str:
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write(what + "\n")
        self.child.stdin.flush()
        return self.child.stdout.readline().strip()

    def counts(self) -> dict[str, int]:
        return dict(json.loads(self.ask("counts")))

    def close(self) -> None:
        self.child.kill()


def seed(sandbox: MotoSandbox, users: int) -> list[str]:
    sandbox.reset()
    names = [f"bench-{i:04d}" for i in range(users)]
    iam = sandbox.iam
    for name in names:
        iam.create_user(UserName=name, Path="/bench/")
        iam.create_access_key(UserName=name)
    time.sleep(1.1)  # max_age 0s: every key is due
    return names


def script(users: list[str], secrets: Path, young: float) -> None:
    """The sequential baseline: the AWS sample's algorithm, one user at a time."""
    iam = boto3.client("iam")
    for user in users:
        keys = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
        new = iam.create_access_key(UserName=user)["AccessKey"]
        (secrets / f"{user}.json").write_text(
            json.dumps({"AccessKeyId": new["AccessKeyId"], "Secret": new["SecretAccessKey"]})
        )
        if young > 0:  # the key is useless until IAM has propagated it: wait, then go on
            time.sleep(young)
        for old in keys:
            iam.update_access_key(UserName=user, AccessKeyId=old["AccessKeyId"], Status="Inactive")
            iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])


async def rotator_sweep(config_path: Path) -> int:
    config = load_config(config_path)
    close = app.configure_audit(config)
    try:
        async with app.open_engine(config) as engine:
            result = await engine.sweep()
        return result.counts()["completed"]
    finally:
        close()


def measured(work: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = work()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def profiled(work: Callable[[], Any], path: str | None) -> Callable[[], Any]:
    """``work``, run under cProfile with its stats written to ``path`` (None: as it is)."""
    if path is None:
        return work

    def run() -> Any:
        profile = cProfile.Profile()
        try:
            return profile.runcall(work)
        finally:
            profile.dump_stats(path)

    return run


def print_profile(path: str, users: int, top: int = 25) -> None:
    """The ``top`` functions by time of their own, per user."""
    stats = pstats.Stats(path)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:top]  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"\nprofile ({path}): {total / users * 1000:.1f} ms per user under cProfile; own time:")
    for (file, line, name), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}({name})"
        print(
            f"  {own / users * 1000:6.2f} ms/user own  {cumulative / users * 1000:7.2f} cum  "
            f"{calls / users:7.1f} calls/user  {where}"
        )


def curve(args: argparse.Namespace) -> None:
    """Rotator's full cycle at each size, one after another against the same server: wall
    time, CPU and calls per user, and each against the smallest size's (linear: 1.0x)."""
    server = Server(args.latency_ms / 1000, args.propagation_s)
    rows: list[tuple[int, float, float, float, int]] = []
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=server.proxy_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        sandbox = MotoSandbox(server.upstream)
        for n in sorted(args.curve):
            tmp = Path(tempfile.mkdtemp(prefix=f"rotator-curve-{n}-"))
            seed(sandbox, n)
            config = tmp / "rotator.toml"
            config.write_text(POLICY.format(tmp=tmp, concurrency=args.concurrency))
            server.ask("reset")
            wall, cpu, completed = measured(partial(asyncio.run, rotator_sweep(config)))
            rows.append((n, wall, cpu, sum(server.counts().values()) / n, completed))
    finally:
        server.close()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average: {load} (2-core machine, shared)")
    print(
        f"curve: latency={args.latency_ms:.0f}ms per AWS call "
        f"propagation={args.propagation_s:g}s concurrency={args.concurrency}"
    )
    first_wall, first_cpu = rows[0][1] / rows[0][0], rows[0][2] / rows[0][0]
    for n, wall, cpu, calls, completed in rows:
        print(
            f"  {n:6d} users: {wall:7.1f}s wall ({wall / n * 1000:6.1f} ms/user, "
            f"{wall / n / first_wall:4.2f}x the smallest's)  CPU {cpu:6.1f}s "
            f"({cpu / n * 1000:5.1f} ms/user, {cpu / n / first_cpu:4.2f}x)  "
            f"{calls:4.1f} calls/user  {completed}/{n} completed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--propagation-s", type=float, default=0.0)
    parser.add_argument("--profile", metavar="FILE", help="cProfile rotator's sweep into FILE")
    parser.add_argument(
        "--skip-script", action="store_true", help="rotator only (no ratio): for profiling"
    )
    parser.add_argument(
        "--curve",
        type=int,
        nargs="+",
        metavar="USERS",
        help="rotator's full cycle at each of these sizes (e.g. 100 500 2000): time and CPU",
    )
    args = parser.parse_args()
    if args.curve:
        curve(args)
        return
    server = Server(args.latency_ms / 1000, args.propagation_s)
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=server.proxy_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        sandbox = MotoSandbox(server.upstream)
        tmp = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
        (tmp / "script").mkdir()

        s_wall = s_cpu = s_calls = 0.0
        if not args.skip_script:
            users = seed(sandbox, args.users)
            server.ask("reset")
            s_wall, s_cpu, _ = measured(lambda: script(users, tmp / "script", args.propagation_s))
            s_calls = sum(server.counts().values())

        seed(sandbox, args.users)
        config = tmp / "rotator.toml"
        config.write_text(POLICY.format(tmp=tmp, concurrency=args.concurrency))
        server.ask("reset")
        sweep = profiled(lambda: asyncio.run(rotator_sweep(config)), args.profile)
        r_wall, r_cpu, completed = measured(sweep)
        r_counts = server.counts()
    finally:
        server.close()
    n = args.users
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2-core machine, shared)")
    print(
        f"users={n} latency={args.latency_ms:.0f}ms per AWS call "
        f"propagation={args.propagation_s:g}s concurrency={args.concurrency}"
    )
    if s_wall:
        print(
            f"script:  {s_wall:7.1f}s wall  {s_cpu / n * 1000:6.1f} ms CPU/user  "
            f"{s_calls / n:4.1f} calls/user"
        )
    print(
        f"rotator: {r_wall:7.1f}s wall  {r_cpu / n * 1000:6.1f} ms CPU/user  "
        f"{sum(r_counts.values()) / n:4.1f} calls/user  ({completed}/{n} completed)"
    )
    busiest = sorted(r_counts.items(), key=lambda kv: -kv[1])[:8]
    print("rotator calls/user by action: " + ", ".join(f"{a} {c / n:.1f}" for a, c in busiest))
    if s_wall:
        print(f"speed-up: {s_wall / r_wall:.1f}x (target >= 10x)")
    if args.profile:
        print_profile(args.profile, n)


if __name__ == "__main__":
    main()
