"""A no-op sweep (nothing is due) at 1k, 10k, ... users: peak memory, CPU and wall time of
the real ``rotator`` command in a fresh process, with and without ``--json``, for ``run``
and ``plan``. The baseline, measured in the same run, is a process that only imports
rotator's app (the floor no sweep can go below). Targets: peak RSS <= 120 MB at 10,000
users, with or without ``--json``; time growing linearly or better (the per-user constant
is printed). Not part of the test run.

    .venv/bin/python -m benchmarks.noop_scale [--users 1000 10000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.sweep_vs_script import Server
from tests.support.moto import MotoSandbox

POLICY = """
max_concurrency = 16
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
stream = "none"
[[rules]]
name = "keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/bench/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{user}}.json" }}
"""
BIN = Path(sys.executable).parent


def seed(sandbox: MotoSandbox, start: int, end: int) -> None:
    iam = sandbox.iam
    for n in range(start, end):
        name = f"noop-{n:06d}"
        iam.create_user(UserName=name, Path="/bench/")
        iam.create_access_key(UserName=name)


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, int]:
    """Peak RSS (MB), CPU (s), wall (s) and exit code of ``argv`` in a fresh process."""
    wall = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - wall
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1) and child.stderr is not None:
        print(child.stderr.read().decode()[-2000:])
    return usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, wall, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    server = Server(0.0, 0.0)
    tmp = Path(tempfile.mkdtemp(prefix="rotator-noop-"))
    config = tmp / "policy.toml"
    config.write_text(POLICY.format(tmp=tmp))
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=server.upstream,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        ROTATOR_CONFIG=str(config),
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
            for command in (["run"], ["run", "--json"], ["plan"], ["plan", "--json"]):
                rss, cpu, wall, code = measure([rotator, *command], env)
                verdict = "ok" if rss <= 120 else "over"
                print(
                    f"  rotator {' '.join(command):<11} peak {rss:6.0f} MB "
                    f"({rss - floor:+5.0f} over baseline; target <= 120 MB: {verdict})  "
                    f"CPU {cpu:6.2f}s = {cpu / users * 1000:5.2f} ms/user  wall {wall:6.1f}s"
                    f"  exit {code}"
                )
    finally:
        server.close()


if __name__ == "__main__":
    main()
