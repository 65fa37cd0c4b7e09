"""The crash matrix for OIDC provider thumbprints: a real ``rotator run`` is SIGKILLed at
every step boundary of a thumbprint rotation (the fault proxy fires the kill when the
process sends a given IAM call, before forwarding it or after IAM applied it), then the
next run repairs it: the provider holds exactly the thumbprint of the chain it serves, one
rotation replaced the old one, the sink's current entry is that thumbprint and nothing is
left pending.

The machinery (``Boundary``, the kill, the recovery run) is the access-key matrix's.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_crash_matrix import Boundary, killer, recover
from tests.e2e.test_oidc_thumbprints import oidc_policy, register, thumbprints
from tests.support import tally
from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.invariants import history
from tests.support.moto import MotoSandbox
from tests.support.oidc import OidcServer, ca, oidc_server, thumbprint

pytestmark = pytest.mark.e2e

# One thumbprint rotation calls: ListOpenIDConnectProviders + GetOpenIDConnectProvider #1
# (inventory), Get #2 (re-check; PLANNED and the CREATING intent are journalled right after
# it, the thumbprint is stored pending), Get #3 (create reads the list) and
# UpdateOpenIDConnectProviderThumbprint #1 (adds it), Get #4 (verify), then, with
# retire_after = 0, Get #5 and Update #2 (the old thumbprint removed).
BOUNDARIES = [
    Boundary("GetOpenIDConnectProvider", "before", 2, what="re-check: nothing journalled yet"),
    Boundary("GetOpenIDConnectProvider", "before", 3, what="CREATING: thumbprint pending"),
    Boundary("UpdateOpenIDConnectProviderThumbprint", "before", what="pending, not added"),
    Boundary("UpdateOpenIDConnectProviderThumbprint", "after", what="added, never seen: adopt"),
    Boundary("GetOpenIDConnectProvider", "before", 4, what="CREATED: verifying"),
    Boundary("GetOpenIDConnectProvider", "before", 5, what="PROMOTED: retiring the old one"),
    Boundary("UpdateOpenIDConnectProviderThumbprint", "before", 2, what="retiring, not removed"),
    Boundary("UpdateOpenIDConnectProviderThumbprint", "after", 2, what="removed, not journalled"),
]


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcServer]:
    with oidc_server(tmp_path) as server:
        yield server


@pytest.fixture
def crash_cli(cli: Cli, proxy: FaultProxy, provider: OidcServer) -> Cli:
    cli.endpoint = proxy.url
    oidc_policy(cli, provider)
    return cli


def moved(sandbox: MotoSandbox, provider: OidcServer) -> tuple[str, str, str]:
    """A provider IAM knows with its old thumbprint, now serving a new intermediate:
    (ARN, old thumbprint, new thumbprint)."""
    old = thumbprint(provider.intermediate)
    arn = register(sandbox, provider, old)
    newer = ca("Test OIDC Intermediate 2", provider.root)
    provider.use(newer)
    return arn, old, thumbprint(newer)


def assert_replaced_once(
    cli: Cli, sandbox: MotoSandbox, provider: OidcServer, arn: str, old: str, new: str
) -> None:
    assert thumbprints(sandbox, arn) == [new], "exactly the served thumbprint remains"
    records = [r for r in history(cli) if r["kind"] == "oidc-thumbprint"]
    assert [(r["state"], r["credential_id"], r["new_credential_id"]) for r in records] == [
        ("completed", old, new)
    ], records
    doc = cli.sink_document(sandbox.account(), provider.url, "oidc-thumbprint")
    assert doc["current"]["Thumbprint"] == new and doc["pending"] is None


@pytest.mark.parametrize("boundary", [pytest.param(b, id=str(b)) for b in BOUNDARIES])
def test_a_thumbprint_sweep_killed_at_a_step_boundary_is_repaired_by_the_next(
    crash_cli: Cli,
    sandbox: MotoSandbox,
    proxy: FaultProxy,
    provider: OidcServer,
    boundary: Boundary,
) -> None:
    arn, old, new = moved(sandbox, provider)
    box: dict[str, subprocess.Popen[str]] = {}
    proxy.on(
        boundary.action,
        phase=boundary.phase,  # type: ignore[arg-type]
        nth=boundary.nth,
        callback=lambda: killer(box),
    )
    box["proc"] = crash_cli.popen("run", "--config", str(crash_cli.config))
    box["proc"].communicate(timeout=60)
    assert proxy.counts()["hooks_fired"] == 1, f"never reached {boundary}"
    assert box["proc"].returncode == -signal.SIGKILL

    recover(crash_cli)
    assert_replaced_once(crash_cli, sandbox, provider, arn, old, new)
    if boundary.action.startswith("Update") and boundary.phase == "after" and boundary.nth == 1:
        (create,) = [s for s in crash_cli.steps(provider.url) if s[0] == "create"]
        assert create == ("create", "already-done"), "the added thumbprint was adopted"
    tally.add(oidc_crash_cases_run=1, oidc_crashes_survived=1)


@pytest.mark.parametrize("seed_value", range(2))
def test_a_thumbprint_sweep_killed_at_a_random_moment_is_repaired(
    crash_cli: Cli, sandbox: MotoSandbox, provider: OidcServer, seed_value: int
) -> None:
    arn, old, new = moved(sandbox, provider)
    delay = random.Random(seed_value).uniform(0.5, 2.0)
    proc = crash_cli.popen("run", "--config", str(crash_cli.config))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    recover(crash_cli)
    assert_replaced_once(crash_cli, sandbox, provider, arn, old, new)
    tally.add(oidc_crash_cases_run=1, oidc_crashes_survived=1)
