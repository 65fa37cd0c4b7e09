"""The crash matrix for certificates: a real ``rotator run`` is SIGKILLed at every step
boundary of a signing-certificate and of a server-certificate rotation (the fault proxy
fires the kill when the process sends a given IAM call, before forwarding it or after IAM
applied it), then the next run repairs it: the certificate is rotated exactly once, IAM
holds exactly the sink's current certificate, and the stored private key matches it.

The machinery (``Boundary``, the kill, the recovery run) is the access-key matrix's.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.e2e.test_certificates import SELF_SIGNED, seed_server, seed_signer
from tests.e2e.test_crash_matrix import Boundary, killer, recover
from tests.support import tally
from tests.support.certs import (
    assert_certificate_rotated_once,
    server_rule,
    signing_rule,
    write_policy,
)
from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

# One signing-certificate rotation calls: ListSigningCertificates #1 inventory (the re-check
# stands on it: PLANNED and the CREATING intent are journalled from what it showed; the
# new key is stored pending), UploadSigningCertificate, #2 verify, then
# UpdateSigningCertificate (deactivate) and DeleteSigningCertificate (delete).
SIGNING = [
    Boundary("ListSigningCertificates", "after", 1, what="inventory read: nothing journalled"),
    Boundary("UploadSigningCertificate", "before", what="key pending in the sink, not uploaded"),
    Boundary("UploadSigningCertificate", "after", what="uploaded, ID never seen: adopt"),
    Boundary("ListSigningCertificates", "before", 2, what="CREATED: verifying"),
    Boundary("UpdateSigningCertificate", "before", what="PROMOTED"),
    Boundary("UpdateSigningCertificate", "after", what="deactivated in IAM, not journalled"),
    Boundary("DeleteSigningCertificate", "before", what="DEACTIVATED"),
    Boundary("DeleteSigningCertificate", "after", what="deleted in IAM, not journalled"),
]
# One server-certificate rotation calls ListServerCertificates (+ GetServerCertificate per
# version): #1 inventory, #2 re-check (PLANNED and the CREATING intent are journalled right
# after it), #3 the versions the new material is checked against, #4 the names taken, then
# UploadServerCertificate, GetServerCertificate #4 (verify) and DeleteServerCertificate
# (the old version retired).
SERVER = [
    Boundary("ListServerCertificates", "before", 2, what="re-check: nothing journalled yet"),
    Boundary("ListServerCertificates", "before", 3, what="CREATING intent journalled"),
    Boundary("ListServerCertificates", "before", 4, what="material pending, name not chosen"),
    Boundary("UploadServerCertificate", "before", what="pending in the sink, not uploaded"),
    Boundary("UploadServerCertificate", "after", what="uploaded, never seen: adopt"),
    Boundary("GetServerCertificate", "before", 4, what="CREATED: verifying"),
    Boundary("DeleteServerCertificate", "before", what="PROMOTED: retiring the old version"),
    Boundary("DeleteServerCertificate", "after", what="deleted in IAM, not journalled"),
]
CASES = [pytest.param("signing", b, id=f"signing-{b}") for b in SIGNING] + [
    pytest.param("server", b, id=f"server-{b}") for b in SERVER
]


HOLDERS = {"signing": ("signer", "signing-certificate"), "server": ("web", "server-certificate")}


def stored_key(cli: Cli, sandbox: MotoSandbox, holder: str, kind: str) -> str | None:
    """The private key the sink held (pending, else current) when the process died."""
    try:
        doc = cli.sink_document(sandbox.account(), holder, kind)
    except FileNotFoundError:
        return None
    entry = doc["pending"] or doc["current"]
    return None if entry is None else str(entry["PrivateKey"])


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


@pytest.fixture
def crash_cli(cli: Cli, proxy: FaultProxy) -> Cli:
    cli.endpoint = proxy.url
    # Due by expiry, not by age: the new certificate (valid a year) is then not due again,
    # so a recovery sweep after a kill that landed late has nothing more to rotate.
    write_policy(cli, signing_rule(cli.tmp, max_age="90d"), server_rule(cli.tmp, SELF_SIGNED))
    return cli


@pytest.mark.parametrize(("kind", "boundary"), CASES)
def test_a_certificate_sweep_killed_at_a_step_boundary_is_repaired_by_the_next(
    crash_cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, kind: str, boundary: Boundary
) -> None:
    if kind == "signing":
        original = seed_signer(sandbox, days_left=10)
    else:
        seed_server(sandbox, "web", days_left=10)
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

    holder, kind_name = HOLDERS[kind]
    stored = stored_key(crash_cli, sandbox, holder, kind_name)

    recover(crash_cli)
    if kind == "server":
        original = "web"
    current = assert_certificate_rotated_once(
        crash_cli, sandbox, holder, kind_name, original=original
    )
    if stored is not None:
        assert current["PrivateKey"] == stored, "the key stored before the crash was replaced"
    if boundary.action.startswith("Upload") and boundary.phase == "after":
        (create,) = [s for s in crash_cli.steps(holder) if s[0] == "create"]
        assert create == ("create", "already-done"), "the upload was adopted, not repeated"
    tally.add(certificate_crash_cases_run=1, certificate_crashes_survived=1)


@pytest.mark.parametrize("seed_value", range(4))
def test_a_certificate_sweep_killed_at_a_random_moment_is_repaired(
    crash_cli: Cli, sandbox: MotoSandbox, seed_value: int
) -> None:
    """Both kinds rotated in one sweep; SIGKILL lands wherever the seeded clock says."""
    original = seed_signer(sandbox, days_left=10)
    seed_server(sandbox, "web", days_left=10)
    delay = random.Random(seed_value).uniform(0.5, 2.0)
    proc = crash_cli.popen("run", "--config", str(crash_cli.config))
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    recover(crash_cli)
    assert_certificate_rotated_once(
        crash_cli, sandbox, "signer", "signing-certificate", original=original
    )
    assert_certificate_rotated_once(crash_cli, sandbox, "web", "server-certificate", original="web")
    killed = proc.returncode == -signal.SIGKILL
    tally.add(certificate_random_kills=1, certificate_random_kills_landed=int(killed))
