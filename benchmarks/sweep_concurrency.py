"""How much ``max_concurrency`` buys: one sweep rotating N users' access keys end to end,
with every AWS call delayed by a proxy (as a real network would), at concurrency 1 and 8.

Prints both wall times and their ratio, measured in the same run against the same local
moto server, so the figure does not depend on the machine. moto and the latency proxy run
in a child process, so that they do not compete with rotator for this process's GIL. Not
part of the test run.

    .venv/bin/python -m benchmarks.sweep_concurrency [--users 40] [--latency-ms 30]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
[[rules]]
name = "bench"
kind = "access-key"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/bench/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{user}}.json" }}
"""


SERVE = """
import logging, sys, time
from moto.server import ThreadedMotoServer
from tests.support.faults import FaultPlan, FaultProxy
logging.getLogger("werkzeug").setLevel(logging.ERROR)
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
latency = float(sys.argv[1])
proxy = FaultProxy(f"http://{host}:{port}", FaultPlan(latency=(latency, latency))).start()
print(f"http://{host}:{port} {proxy.url}", flush=True)
time.sleep(3600)
"""


def seed(sandbox: MotoSandbox, users: int) -> None:
    sandbox.reset()
    for i in range(users):
        sandbox.create_user(f"bench-{i:03d}", path="/bench/", keys=1)
    time.sleep(1.1)  # max_age 0s: every key is due


async def sweep_once(config_path: Path) -> tuple[float, int]:
    config = load_config(config_path)
    close = app.configure_audit(config)
    try:
        async with app.open_engine(config) as engine:
            started = time.perf_counter()
            result = await engine.sweep()
            return time.perf_counter() - started, result.counts()["completed"]
    finally:
        close()


def run(concurrency: int, users: int, sandbox: MotoSandbox) -> float:
    seed(sandbox, users)
    tmp = Path(tempfile.mkdtemp(prefix="rotator-bench-"))
    config = tmp / "rotator.toml"
    config.write_text(POLICY.format(tmp=tmp, concurrency=concurrency))
    seconds, completed = asyncio.run(sweep_once(config))
    assert completed == users, f"only {completed} of {users} rotations completed"
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--latency-ms", type=float, default=30.0)
    args = parser.parse_args()
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(args.latency_ms / 1000)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        upstream, proxy_url = child.stdout.readline().split()
        os.environ.update(
            AWS_ENDPOINT_URL=proxy_url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        sandbox = MotoSandbox(upstream)
        serial = run(1, args.users, sandbox)
        parallel = run(8, args.users, sandbox)
    finally:
        child.kill()
    print(f"users={args.users} latency={args.latency_ms:.0f}ms per AWS call")
    print(f"max_concurrency=1: {serial:.2f}s ({serial / args.users * 1000:.0f} ms/user)")
    print(f"max_concurrency=8: {parallel:.2f}s ({parallel / args.users * 1000:.0f} ms/user)")
    print(f"speed-up: {serial / parallel:.1f}x")


if __name__ == "__main__":
    main()
