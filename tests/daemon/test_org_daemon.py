"""``rotator daemon`` with ``[accounts]``: each scheduled sweep covers every account;
metrics per account and over all; an account without the role is counted as failed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rotator import app
from rotator.daemon.jobs import run_now
from rotator.daemon.service import Daemon
from rotator.settings import load_config_text
from tests.support.moto import MotoSandbox
from tests.support.org import ROLE, Org, assume_role_needs_the_role

POLICY = """
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
stream = "none"
[verify]
attempts = 3
initial_delay = "1s"
[accounts]
role_name = "{role}"
[accounts.organization]
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "file", path = "{tmp}/secrets/{{account}}/{{user}}.json" }}
"""


@pytest.fixture
def org(sandbox: MotoSandbox) -> Iterator[Org]:
    org = Org(sandbox).create()
    org.account("prod", "/Workloads")
    org.account("norole", "/Workloads", role=False)
    for account in org.accounts.values():
        org.user(account, "ci-app")
    with assume_role_needs_the_role():
        yield org


async def test_a_scheduled_sweep_covers_every_account(org: Org, tmp_path: Path) -> None:
    config = app.check(load_config_text(POLICY.format(tmp=tmp_path, role=ROLE), "t"), "t")
    daemon = Daemon(config, path=tmp_path / "rotator.toml")
    await daemon._sweep(run_now())
    metrics = daemon.metrics.registry
    prod, norole = org.accounts["prod"], org.accounts["norole"]
    sample = metrics.get_sample_value
    assert sample("rotator_account_sweeps_total", {"account": prod, "result": "ok"}) == 1
    assert sample("rotator_account_sweeps_total", {"account": norole, "result": "failed"}) == 1
    assert sample("rotator_sweeps_total", {"result": "problems"}) == 1
    started = sample("rotator_rotations_total", {"kind": "access-key", "outcome": "started"})
    assert started == 1
    assert daemon._last is not None and daemon._last["accounts_failed"] == [norole]
    assert len(org.keys(prod, "ci-app")) == 2 and len(org.keys(norole, "ci-app")) == 1


async def test_owners_are_told_through_their_accounts_tags(org: Org, tmp_path: Path) -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    prod = org.accounts["prod"]
    org.in_account(prod, "iam").tag_user(
        UserName="ci-app", Tags=[{"Key": "owner-email", "Value": "alice@example.com"}]
    )
    notify = (
        f'[notify]\nwebhook_url = "http://127.0.0.1:{server.server_address[1]}/hook"\n'
        'owner_tag = "owner-email"\n'
    )
    text = notify + POLICY.format(tmp=tmp_path, role=ROLE)
    config = app.check(load_config_text(text, "t"), "t")
    try:
        await Daemon(config, path=tmp_path / "rotator.toml")._sweep(run_now())
    finally:
        server.shutdown()
    bodies = [m["rotator"] for m in seen]
    owners = [b for b in bodies if b.get("owner")]
    assert [b["owner"] for b in owners] == ["alice@example.com"]
    assert all(b["account"] == prod for b in bodies)
    assert len(bodies) == 2  # the account's sweep, and its owner
