"""``rotator demo``: the whole access-key cycle against a local moto server.

Starts moto on a free port of 127.0.0.1, points this process's AWS environment at it,
seeds users in the situations a real account has, writes a zero-duration policy into a
work directory, then shows the plan, runs one sweep and shows what changed: IAM's keys,
the secrets in the sink (and that they authenticate), and the audit log. Needs the
``sandbox`` extra (moto[server]).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer
from rich.console import Console

from rotator import app as application
from rotator.entrypoints import render
from rotator.model import Plan
from rotator.rotation.report import SweepResult

POLICY = """\
# The sandbox policy: every duration is zero, so one sweep runs the whole cycle
# (create, verify, promote, deactivate, delete). Real policies use days.
[journal]
url = "sqlite:///{workdir}/journal.db"

[audit]
file = "{workdir}/audit.jsonl"
stream = "none"

[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/ci/", users = ["*"] }}
exclude = {{ users = ["break-glass"], tags = {{ "rotator:skip" = "true" }} }}
sink = {{ type = "file", path = "{workdir}/secrets/{{account}}/{{user}}/{{kind}}.json" }}

[[rules]]
name = "ops-keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/ops/" }}
sink = {{ type = "file", path = "{workdir}/secrets/{{account}}/{{user}}/{{kind}}.json" }}
"""

# (user, path, tags, active keys, inactive keys, what the demo shows)
USERS: list[tuple[str, str, dict[str, str], int, int, str]] = [
    ("ci-deployer", "/ci/", {}, 1, 0, "one old key: rotated"),
    ("ci-builder", "/ci/", {}, 1, 1, "an inactive second key: deleted first, then rotated"),
    ("legacy-app", "/ci/", {}, 2, 0, "two active keys: blocked, nothing changed"),
    ("break-glass", "/ci/", {}, 1, 0, "excluded by name"),
    ("vendor-sync", "/ci/", {"rotator:skip": "true"}, 1, 0, "excluded by tag"),
    ("ops-alice", "/ops/", {}, 1, 0, "a young key under a 90-day rule: not due"),
]


def start_moto() -> tuple[ThreadedMotoServer, str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def sandbox_environment(url: str) -> dict[str, str]:
    """The AWS environment that points every client at the sandbox (never at AWS)."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def seed(iam: Any) -> None:
    for name, path, tags, active, inactive, _ in USERS:
        iam.create_user(
            UserName=name, Path=path, Tags=[{"Key": k, "Value": v} for k, v in tags.items()]
        )
        for _ in range(inactive):
            key = iam.create_access_key(UserName=name)["AccessKey"]["AccessKeyId"]
            iam.update_access_key(UserName=name, AccessKeyId=key, Status="Inactive")
        for _ in range(active):
            iam.create_access_key(UserName=name)
    time.sleep(1.1)  # every seeded key is now strictly older than the sweep


def _keys(iam: Any, user: str) -> str:
    listed = iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
    return ", ".join(f"{k['AccessKeyId']} ({k['Status']})" for k in listed) or "none"


async def _plan_and_sweep(config_path: Path) -> tuple[Plan, SweepResult]:
    config = application.load(config_path)
    close = application.configure_audit(config)
    try:
        async with application.open_engine(config) as engine:
            plan = await engine.plan()
            result = await engine.sweep()
    finally:
        close()
    return plan, result


def _show_secrets(console: Console, workdir: Path, url: str) -> None:
    for path in sorted((workdir / "secrets").rglob("*.json")):
        doc = json.loads(path.read_text())
        current = doc["current"]
        sts = boto3.client(
            "sts",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=current["AccessKeyId"],
            aws_secret_access_key=current["SecretAccessKey"],
        )
        arn = sts.get_caller_identity()["Arn"]
        mode = oct(path.stat().st_mode & 0o777)
        console.print(
            f"  {path} ({mode}): current {current['AccessKeyId']} authenticates as {arn}",
            highlight=False,
        )


def run_demo(workdir: Path | None, console: Console, *, serve: bool = False) -> bool:
    """Run the demo; True if everything behaved as the demo expects."""
    workdir = (workdir or Path(tempfile.mkdtemp(prefix="rotator-demo-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    server, url = start_moto()
    try:
        os.environ.update(sandbox_environment(url))
        os.environ.pop("AWS_PROFILE", None)
        config_path = workdir / "rotator.toml"
        config_path.write_text(POLICY.format(workdir=workdir))
        iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
        console.rule("[bold]rotator demo[/]: a local moto server, no AWS account")
        console.print(f"sandbox IAM at {url}; policy {config_path}\n", highlight=False)
        seed(iam)
        for name, _, _, _, _, story in USERS:
            console.print(f"  {name:<12} {story}: {_keys(iam, name)}", highlight=False)
        plan, result = asyncio.run(_plan_and_sweep(config_path))
        console.print()
        console.print(render.plan_table(plan))
        console.print(render.sweep_table(result))
        console.print(render.counts_line(result), highlight=False)
        console.rule("after the sweep")
        for name, *_ in USERS:
            console.print(f"  {name:<12} {_keys(iam, name)}", highlight=False)
        console.print("\nsecrets (file sink):")
        _show_secrets(console, workdir, url)
        audit_file = workdir / "audit.jsonl"
        lines = audit_file.read_text().splitlines()
        console.print(f"\naudit log: {audit_file} ({len(lines)} events), e.g.:")
        for line in lines[1:4]:
            console.print(f"  {line}", markup=False, highlight=False)
        console.print(
            f"\njournal: {workdir / 'journal.db'} — try "
            f"`rotator history --config {config_path}` while the sandbox runs "
            "(`rotator demo --serve`).",
            highlight=False,
        )
        counts = result.counts()
        ok = counts["completed"] == 2 and counts["blocked"] == 1 and counts["failed"] == 0
        if serve:
            _serve(console, url, config_path)
        return ok
    finally:
        server.stop()


def _serve(console: Console, url: str, config_path: Path) -> None:
    console.rule("sandbox running")
    console.print("In another shell:", highlight=False)
    exports = {**sandbox_environment(url), "ROTATOR_CONFIG": str(config_path)}
    for key, value in exports.items():
        console.print(f"  export {key}={shlex.quote(value)}", markup=False, highlight=False)
    console.print("Ctrl-C stops the sandbox.")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return
