"""A no-op sweep (nothing is due) at 1k, 10k and 50k users: peak memory, CPU and wall time
of the real ``rotator`` command in a fresh process, with and without ``--json``, for ``run``
and ``plan``. The baseline, measured in the same run, is a process that only imports
rotator's app (the floor no sweep can go below). Targets: peak RSS <= 120 MB at 10,000
users, with or without ``--json``; growth linear or better: the per-user constants (KB of
peak memory and ms of CPU per user, between successive sizes) are printed. Not part of the
test run.

    .venv/bin/python -m benchmarks.noop_scale [--users 1000 10000 50000] [--commands run]

The users are seeded straight into the moto server's IAM backend (in its own process, no
HTTP: 50,000 users take seconds rather than the minutes 100,000 API calls would), each with
one fresh access key; rotator then reads them as it reads IAM: ``ListUsers`` pages of at
most 1,000 (moto answers with every user in one page; the server here pages as IAM does)
and the account's credential report.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
COMMANDS = {
    "run": ["run"],
    "run-json": ["run", "--json"],
    "plan": ["plan"],
    "plan-json": ["plan", "--json"],
}

# moto in a child process. "seed START END" creates users START..END-1 (one access key
# each) in its IAM backend directly; ListUsers is paged by MaxItems and Marker, as IAM does.
SERVE = """
import logging, sys
from moto.core import DEFAULT_ACCOUNT_ID
from moto.core.responses import ActionResult
from moto.iam.models import iam_backends
from moto.iam.responses import IamResponse
from moto.server import ThreadedMotoServer

def list_users(self):
    users = list(self.backend.list_users(self._get_param("PathPrefix"), None, None))
    start = int(self._get_param("Marker") or 0)
    end = start + int(self._get_param("MaxItems") or 100)
    result = {"Users": users[start:end], "IsTruncated": end < len(users)}
    if end < len(users):
        result["Marker"] = str(end)
    return ActionResult(result)

IamResponse.list_users = list_users
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
iam = iam_backends[DEFAULT_ACCOUNT_ID]["global"]
for line in sys.stdin:
    _, start, end = line.split()
    for n in range(int(start), int(end)):
        name = f"noop-{n:06d}"
        iam.create_user("us-east-1", name, path="/bench/")
        iam.create_access_key(name)
    print("ok", flush=True)
"""


class Moto:
    """The child process: moto, paging ListUsers, seeded on request."""

    def __init__(self) -> None:
        self.child = subprocess.Popen(
            [sys.executable, "-c", SERVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.child.stdout is not None
        self.url = self.child.stdout.readline().strip()

    def seed(self, start: int, end: int) -> None:
        assert self.child.stdin is not None
        assert self.child.stdout is not None
        self.child.stdin.write(f"seed {start} {end}\n")
        self.child.stdin.flush()
        if self.child.stdout.readline().strip() != "ok":
            raise RuntimeError("seeding failed")

    def close(self) -> None:
        self.child.kill()


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
    parser.add_argument("--users", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument(
        "--commands", nargs="+", choices=sorted(COMMANDS), default=["run", "run-json", "plan"]
    )
    args = parser.parse_args()
    moto = Moto()
    tmp = Path(tempfile.mkdtemp(prefix="rotator-noop-"))
    config = tmp / "policy.toml"
    config.write_text(POLICY.format(tmp=tmp))
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL=moto.url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        ROTATOR_CONFIG=str(config),
    )
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average: {load} (a 2-core machine shared with other jobs)")
    try:
        floor, _, _, _ = measure([sys.executable, "-c", "import rotator.app"], env)
        print(f"baseline: a process importing rotator.app peaks at {floor:.0f} MB")
        seeded = 0
        rotator = str(BIN / "rotator")
        seen: dict[str, list[tuple[int, float, float]]] = {}
        for users in sorted(args.users):
            started = time.perf_counter()
            moto.seed(seeded, users)
            seeded = users
            print(f"\n{users} users (seeded in {time.perf_counter() - started:.0f}s)")
            for name in args.commands:
                rss, cpu, wall, code = measure([rotator, *COMMANDS[name]], env)
                verdict = "ok" if rss <= 120 else "over"
                print(
                    f"  rotator {' '.join(COMMANDS[name]):<11} peak {rss:6.0f} MB "
                    f"({rss - floor:+5.0f} over baseline; target <= 120 MB: {verdict})  "
                    f"CPU {cpu:6.2f}s = {cpu / users * 1000:5.2f} ms/user  wall {wall:6.1f}s"
                    f"  exit {code}"
                )
                seen.setdefault(name, []).append((users, rss, cpu))
        print("\nper-user constants between successive sizes (the slope of the curve):")
        for name, points in seen.items():
            slopes = [
                f"{n0}->{n1}: {(r1 - r0) * 1024 / (n1 - n0):5.2f} KB/user "
                f"{(c1 - c0) * 1000 / (n1 - n0):5.2f} ms CPU/user"
                for (n0, r0, c0), (n1, r1, c1) in itertools.pairwise(points)
            ]
            print(f"  rotator {' '.join(COMMANDS[name]):<11} " + "; ".join(slopes))
    finally:
        moto.close()


if __name__ == "__main__":
    main()
