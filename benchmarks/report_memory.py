"""``rotator report`` at 1k and 10k users: peak memory (RSS), CPU and wall time of the real
command in a fresh process, for each ``--output`` format. The baseline, measured in the
same run, is a process that only imports rotator's app (the floor no report can go
below); the ratio printed is the report's peak over that floor. Target: peak RSS about
150 MB or less at 10,000 users in every format (the report is built once and every format
writes its rows one at a time). Not part of the test run.

    .venv/bin/python -m benchmarks.report_memory [--users 1000 10000] [--formats table json]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.noop_scale import BIN, POLICY, measure
from benchmarks.sweep_vs_script import Server
from tests.support.moto import MotoSandbox

FORMATS = ("table", "json", "csv", "text", "markdown", "html")
TARGET_MB = 150


def seed(sandbox: MotoSandbox, start: int, end: int) -> None:
    """Users ``start``..``end``: every one with a key, every third with a second."""
    iam = sandbox.iam
    for n in range(start, end):
        name = f"report-{n:06d}"
        iam.create_user(UserName=name, Path="/bench/")
        iam.create_access_key(UserName=name)
        if n % 3 == 0:
            iam.create_access_key(UserName=name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=FORMATS)
    args = parser.parse_args()
    server = Server(0.0, 0.0)
    tmp = Path(tempfile.mkdtemp(prefix="rotator-report-"))
    config = tmp / "policy.toml"
    config.write_text(POLICY.format(tmp=tmp))
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=server.upstream,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        ROTATOR_CONFIG=str(config),
        COLUMNS="80",
    )
    os.environ.update({k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")})
    sandbox = MotoSandbox(server.upstream)
    try:
        floor, _, _, _ = measure([sys.executable, "-c", "import rotator.app"], env)
        print(f"baseline: a process importing rotator.app peaks at {floor:.0f} MB")
        seeded = 0
        rotator = str(BIN / "rotator")
        for users in sorted(args.users):
            started = time.perf_counter()
            seed(sandbox, seeded, users)
            seeded = users
            print(f"\n{users} users (seeded in {time.perf_counter() - started:.0f}s)")
            for shape in args.formats:
                rss, cpu, wall, code = measure([rotator, "report", "--output", shape], env)
                verdict = "ok" if rss <= TARGET_MB else "over"
                print(
                    f"  report --output {shape:<9} peak {rss:6.0f} MB = {rss / floor:4.2f}x "
                    f"baseline (target <= {TARGET_MB} MB: {verdict})  CPU {cpu:6.2f}s "
                    f"= {cpu / users * 1000:5.2f} ms/user  wall {wall:6.1f}s  exit {code}"
                )
    finally:
        server.close()


if __name__ == "__main__":
    main()
