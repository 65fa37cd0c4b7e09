"""What the credential report saves: the IAM calls of one no-op sweep (nothing is due) of
an account with N users (default 1,000), each with an access key and a console password,
inventoried with the credential report and then listing per user.

A moto server is seeded, and a real ``Engine.sweep()`` runs through the fault proxy of
``tests/support/faults.py`` (with no faults), whose ``actions_seen()`` counts every AWS
call. The per-user run forces ``rotator.inventory.use_report`` to answer False (what
happens when the report is unavailable). A second pair of runs adds
``disable_unused_after`` (last-used dates are then needed for every active credential).
Prints the counts and their ratio. Not part of the test run.

    .venv/bin/python -m benchmarks.iam_calls [--users 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

from rotator import audit, inventory
from rotator.aws import Aws
from rotator.journal import MemoryJournal
from rotator.model import Action
from rotator.rotation.engine import Engine
from rotator.settings import Config
from tests.support.faults import FaultProxy

PASSWORD = "Bench-Passw0rd!" + "x" * 10
STS = frozenset({"GetCallerIdentity"})


def rules(unused: str | None) -> list[dict[str, Any]]:
    extra = {"disable_unused_after": unused} if unused else {}
    sink = {"type": "memory"}
    return [
        {"name": "keys", "kind": "access-key", "max_age": "90d", "sink": sink, **extra},
        {"name": "console", "kind": "login-profile", "max_age": "90d", "sink": sink, **extra},
    ]


def seed(url: str, users: int) -> None:
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for n in range(users):
        name = f"user-{n:04d}"
        iam.create_user(UserName=name, Path="/bench/")
        iam.create_access_key(UserName=name)
        iam.create_login_profile(UserName=name, Password=PASSWORD)


@contextmanager
def per_user_listing() -> Iterator[None]:
    original = inventory.use_report
    inventory.use_report = lambda candidates: False
    try:
        yield
    finally:
        inventory.use_report = original


async def sweep(proxy: FaultProxy, unused: str | None) -> tuple[Counter[str], float]:
    """The IAM calls (by action) and seconds of one sweep."""
    before = len(proxy.actions_seen())
    config = Config(rules=rules(unused), max_concurrency=16)  # type: ignore[arg-type]
    engine = Engine(config=config, journal=MemoryJournal(), aws=Aws(endpoint_url=proxy.url))
    started = time.monotonic()
    result = await engine.sweep()
    elapsed = time.monotonic() - started
    acted = [d for d in result.plan if d.action not in (Action.SKIP, Action.EXCLUDE)]
    assert not acted, f"not a no-op sweep: {acted[:3]}"
    calls = Counter(a for a in proxy.actions_seen()[before:] if a not in STS)
    return calls, elapsed


def show(label: str, calls: Counter[str], seconds: float) -> None:
    detail = ", ".join(f"{a} {n}" for a, n in calls.most_common())
    print(f"  {label:<28} {sum(calls.values()):>6} IAM calls  {seconds:6.1f}s  ({detail})")


async def main(users: int) -> None:
    for unused in (None, "45d"):
        print(
            f"no-op sweep, {users} users" + (f", disable_unused_after {unused}" if unused else "")
        )
        with FaultProxy(os.environ["AWS_ENDPOINT_URL"]) as proxy:
            report, report_s = await sweep(proxy, unused)
            with per_user_listing():
                listed, listed_s = await sweep(proxy, unused)
        show("with the credential report", report, report_s)
        show("listing per user", listed, listed_s)
        ratio = sum(listed.values()) / max(1, sum(report.values()))
        print(f"  ratio: {ratio:.0f}x fewer IAM calls with the report\n")


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    audit.configure(stream="none")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    os.environ.update(
        AWS_ENDPOINT_URL=url,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    try:
        started = time.monotonic()
        seed(url, args.users)
        print(f"seeded {args.users} users in {time.monotonic() - started:.0f}s\n")
        asyncio.run(main(args.users))
    finally:
        server.stop()


if __name__ == "__main__":
    run()
