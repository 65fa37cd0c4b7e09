"""`rotator iam-policy` grants every AWS call rotator really makes.

The real CLI runs against moto through the ``FaultProxy``, which records every request.
Each request becomes the (IAM action, resource) pairs IAM would authorise it by
(``tests/support/authorised.py``), and each must be granted by the document `iam-policy`
printed for the same policy file: `journal init` against ``--journal-init``; a `run`
rotating every kind moto can hold (access keys, signing certificates, SSH keys, console
passwords — and disabling an unused one —, server certificates, OIDC thumbprints) into
every AWS sink with a DynamoDB journal, then an emergency `rotate`, `plan`, `status` and
`history`, against the default document; and `report` against ``--for report``. An
organization's hub and member roles, each against its own document. moto has no
service-specific credentials: that kind is checked by the unit tests only
(tests/test_permissions.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from moto.iam.models import iam_backends

from rotator.kinds.ssh_public_key import key_pair
from rotator.model import utcnow
from tests.support import iam_seed
from tests.support.authorised import Need, World, denied, needs
from tests.support.certs import DAY, make_ca, make_leaf, upload_server_certificate
from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox
from tests.support.oidc import OidcServer, ca, oidc_server, thumbprint
from tests.support.org import ROLE, Org, assume_role_needs_the_role

pytestmark = pytest.mark.e2e

TABLE = "rotator-journal"
SM = '{ type = "secretsmanager", name = "rotator/{account}/{user}/{kind}" }'
SSM = '{ type = "ssm", name = "/rotator/{account}/{user}/{kind}" }'
FILE = '{{ type = "file", path = "{tmp}/secrets/{{account}}/{{name}}/{{kind}}.json" }}'
POLICY = """\
[journal]
url = "dynamodb://{table}"

[audit]
file = "{tmp}/audit.jsonl"

[verify]
attempts = 3
initial_delay = "1s"

[[rules]]
name = "keys"
kind = "access-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/ci/" }}
sink = {sm}

[[rules]]
name = "idle-keys"
kind = "access-key"
max_age = "365d"
disable_unused_after = "45d"
select = {{ path_prefix = "/idle/" }}
sink = {sm}

[[rules]]
name = "signing"
kind = "signing-certificate"
max_age = "0s"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/signers/" }}
sink = {ssm}

[[rules]]
name = "git"
kind = "ssh-public-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "0s"
key_size = 2048
select = {{ path_prefix = "/git/" }}
sink = {ssm}

[[rules]]
name = "console"
kind = "login-profile"
max_age = "90d"
select = {{ path_prefix = "/ops/" }}
sink = {sm}

[[rules]]
name = "idle-consoles"
kind = "login-profile"
max_age = "365d"
disable_unused_after = "45d"
select = {{ path_prefix = "/idle/" }}
sink = {sm}

[[rules]]
name = "web"
kind = "server-certificate"
retire_after = "0s"
issuer = {{ type = "self-signed", dns_names = ["web.internal"], validity = "90d" }}
select = {{ path_prefix = "/lb/", names = ["*"] }}
sink = {file}

[[rules]]
name = "oidc"
kind = "oidc-thumbprint"
retire_after = "0s"
ca_bundle = "{ca_bundle}"
select = {{ names = ["127.0.0.1:*"] }}
sink = {file}
"""
PASSWORDS = {
    "MinimumPasswordLength": 32,
    "RequireSymbols": True,
    "RequireNumbers": True,
    "RequireUppercaseCharacters": True,
    "RequireLowercaseCharacters": True,
}
# What the run must have called, or the check below proves little.
EXERCISED = {
    "iam:CreateAccessKey",
    "iam:DeleteAccessKey",
    "iam:UpdateAccessKey",
    "iam:UploadSigningCertificate",
    "iam:DeleteSigningCertificate",
    "iam:UploadSSHPublicKey",
    "iam:DeleteSSHPublicKey",
    "iam:UpdateLoginProfile",
    "iam:DeleteLoginProfile",
    "iam:UploadServerCertificate",
    "iam:UpdateOpenIDConnectProviderThumbprint",
    "secretsmanager:CreateSecret",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
    "ssm:PutParameter",
    "ssm:LabelParameterVersion",
    "dynamodb:PutItem",
    "dynamodb:GetItem",
    "dynamodb:Scan",
}


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OidcServer]:
    with oidc_server(tmp_path) as server:
        yield server


@pytest.fixture
def proxy(aws_env: str) -> Iterator[FaultProxy]:
    with FaultProxy(aws_env) as proxy:
        yield proxy


def seed(sandbox: MotoSandbox, provider: OidcServer) -> None:
    """One holder due for each rule (and one unused key and password to disable)."""
    now = utcnow()
    sandbox.iam.update_account_password_policy(**PASSWORDS)
    sandbox.create_user("ci-app", path="/ci/", keys=1)
    sandbox.age_keys("ci-app", days=120)
    idle = sandbox.create_user("idle-bot", path="/idle/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys("idle-bot", days=60)
    iam_seed.use_key(sandbox, idle, now - timedelta(days=50))
    sandbox.create_user("signer", path="/signers/")
    signing = make_leaf("signer")
    sandbox.iam.upload_signing_certificate(UserName="signer", CertificateBody=signing.pem)
    sandbox.iam.create_user(UserName="git-bot", Path="/git/")
    _, public, _ = key_pair(2048)
    sandbox.iam.upload_ssh_public_key(UserName="git-bot", SSHPublicKeyBody=public)
    for key in iam_seed.user(sandbox, "git-bot").ssh_public_keys:
        key.upload_date -= timedelta(days=100)
    iam_seed.console_user(sandbox, "ops-alice", path="/ops/", days_old=100)
    iam_seed.console_user(sandbox, "idle-carol", path="/idle/", days_old=100)
    iam_seed.sign_in(sandbox, "idle-carol", now - timedelta(days=50))
    seed_ca = make_ca("Seed CA")
    web = make_leaf("web", issuer=seed_ca, not_before=now - 80 * DAY, not_after=now + 10 * DAY)
    upload_server_certificate(sandbox, "web", web, path="/lb/", chain=seed_ca.pem)
    sandbox.iam.create_open_id_connect_provider(
        Url=f"https://{provider.url}",
        ThumbprintList=[thumbprint(provider.intermediate)],
        ClientIDList=["sts.amazonaws.com"],
    )
    provider.use(ca("Test OIDC Intermediate 2", provider.root))  # a thumbprint to add
    time.sleep(1.1)  # everything strictly older than the sweep's start


def world(sandbox: MotoSandbox, before: World | None = None) -> World:
    """Users' paths, access keys' owners and server certificates' paths in the account
    now, added to what ``before`` knew (a deleted key's owner stays known)."""
    backend = iam_seed.backend(sandbox)
    known = before or World(account=sandbox.account())
    known.user_paths |= {name: user.path for name, user in backend.users.items()}
    known.key_owners |= {k: key.user_name for k, key in backend.access_keys.items()}
    known.certificate_paths |= {c.cert_name: c.path for c in backend.certificates.values()}
    return known


def policy(cli: Cli, *args: str) -> dict[str, Any]:
    """The document `rotator iam-policy` prints for ``cli``'s policy file."""
    printed = cli("iam-policy", *args)
    assert printed.code == 0, printed.stderr
    assert printed.stderr == ""
    document: dict[str, Any] = json.loads(printed.stdout)
    return document


def called(proxy: FaultProxy, known: World, *, since: int = 0) -> list[tuple[str, str]]:
    """The (action, resource) pairs of the calls rotator's own identity made (a new
    access key's verification call is signed by that key: no policy of ours applies)."""
    found = []
    for request in proxy.requests_seen()[since:]:
        if "Credential=testing/" in request.headers.get("authorization", ""):
            found.extend(needs(request, known))
        else:
            assert (request.service, request.action) == ("sts", "GetCallerIdentity")
    return found


def test_every_call_of_journal_init_run_and_report_is_granted_by_iam_policy(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy, provider: OidcServer
) -> None:
    cli.config.write_text(
        POLICY.format(
            table=TABLE,
            tmp=cli.tmp,
            sm=SM,
            ssm=SSM,
            file=FILE.format(tmp=cli.tmp),
            ca_bundle=provider.ca_bundle,
        )
    )
    seed(sandbox, provider)
    known = world(sandbox)
    cli.endpoint = proxy.url
    run_policy = policy(cli)
    init_policy = policy(cli, "--journal-init")
    report_policy = policy(cli, "--for", "report")
    assert proxy.calls_seen() == [], "iam-policy calls no AWS API"

    init = cli("journal", "init")
    assert init.code == 0, init.stderr
    init_calls = called(proxy, known)
    table = f"arn:aws:dynamodb:us-east-1:{known.account}:table/{TABLE}"
    assert ("dynamodb:CreateTable", table) in init_calls
    assert denied(init_policy, init_calls) == []

    mark = len(proxy.requests_seen())
    result = cli("run", "--json")
    assert result.code == 0, result.stdout + result.stderr
    known = world(sandbox, known)
    run_calls = called(proxy, known, since=mark)
    assert {action for action, _ in run_calls} >= EXERCISED, "the run rotated every kind"
    assert denied(run_policy, run_calls) == []
    assert not [a for a, _ in run_calls if a == "dynamodb:TransactWriteItems"]

    # The other commands the run document is for: an emergency rotation of a leaked key,
    # and the read-only views.
    mark = len(proxy.requests_seen())
    (leaked,) = sandbox.keys("ci-app")
    emergency = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes", "--json")
    assert emergency.code == 0, emergency.stdout + emergency.stderr
    assert leaked not in sandbox.keys("ci-app")
    for view in ("plan", "status", "history"):
        shown = cli(view, "--json")
        assert shown.code == 0, shown.stdout + shown.stderr
    known = world(sandbox, known)
    more_calls = called(proxy, known, since=mark)
    assert "iam:CreateAccessKey" in {action for action, _ in more_calls}
    assert denied(run_policy, more_calls) == []

    mark = len(proxy.requests_seen())
    report = cli("report", "--json")
    assert report.code == 0, report.stdout + report.stderr
    report_calls = called(proxy, known, since=mark)
    assert {"iam:GetCredentialReport", "iam:ListServerCertificates"} <= {
        action for action, _ in report_calls
    }
    assert denied(report_policy, report_calls) == []


def test_report_needs_for_report_when_no_rule_covers_server_certificates(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy
) -> None:
    """The run's policy (access keys at /ci/) lacks what `report` calls — every server
    certificate, every user's keys — and ``--for report`` grants all of it."""
    sandbox.create_user("ci-app", path="/ci/", keys=1)
    sandbox.create_user("someone", path="/people/", keys=2)
    iam_seed.console_user(sandbox, "admin", days_old=10)
    known = world(sandbox)
    cli.endpoint = proxy.url

    report = cli("report", "--json")
    assert report.code == 0, report.stdout + report.stderr
    report_calls = called(proxy, known)

    missing = denied(policy(cli), report_calls)
    assert ("iam:ListServerCertificates", "*") in missing
    assert denied(policy(cli, "--for", "report"), report_calls) == []
    both = policy(cli, "--for", "run", "--for", "report")
    assert denied(both, report_calls) == []


ORG_POLICY = """\
[journal]
url = "sqlite:///{tmp}/journal.db"
[audit]
file = "{tmp}/audit.jsonl"
stream = "none"
[verify]
attempts = 3
initial_delay = "1s"
[accounts]
role_name = "{role}"
external_id = "rotator-e2e"
[accounts.organization]
ous = ["/Workloads"]
[[rules]]
name = "ci-keys"
kind = "access-key"
max_age = "90d"
deactivate_after = "0s"
delete_after = "0s"
select = {{ path_prefix = "/ci/" }}
sink = {{ type = "secretsmanager", name = "rotator/{{account}}/{{user}}" }}
"""


def member_world(org: Org, before: World | None = None) -> World:
    """The member accounts' users and access key owners (a deleted key's owner stays
    known). Resources name account ``*``: every statement of ours does, and a member's
    session key does not say which account it acts in."""
    known = before or World(account="*")
    for account in org.accounts.values():
        backend = iam_backends[account]["aws"]
        known.user_paths |= {name: user.path for name, user in backend.users.items()}
        known.key_owners |= {k: key.user_name for k, key in backend.access_keys.items()}
    return known


def split_by_principal(
    proxy: FaultProxy, members: World, since: int = 0
) -> tuple[list[Need], list[Need]]:
    """(the hub's needs, the member roles' needs) of the requests since ``since``: the
    hub signs with the test's key, a member role with an assumed role's session key
    (``ASIA…``); a new user key (``AKIA…``) only verifies itself."""
    hub, member = [], []
    for request in proxy.requests_seen()[since:]:
        signed = request.headers.get("authorization", "")
        if "Credential=testing/" in signed:
            hub.extend(needs(request, members))
        elif "Credential=ASIA" in signed:
            member.extend(needs(request, members))
        else:
            assert (request.service, request.action) == ("sts", "GetCallerIdentity")
    return hub, member


def test_an_organization_sweep_needs_only_the_hub_and_member_policies(
    cli: Cli, sandbox: MotoSandbox, proxy: FaultProxy
) -> None:
    """The hub (Organizations, AssumeRole, the journal) and the member role (the account's
    IAM and the sink kept there) each stay inside what ``--hub`` / ``--member`` print,
    for a run, an emergency rotation found through the key's account, and a report."""
    org = Org(sandbox).create()
    for name, ou in (("prod", "/Workloads/Prod"), ("dev", "/Workloads")):
        org.user(org.account(name, ou), "ci-app")
    cli.config.write_text(ORG_POLICY.format(tmp=cli.tmp, role=ROLE))
    cli.endpoint = proxy.url
    hub_policy, member_policy = policy(cli, "--hub"), policy(cli, "--member")
    report_hub = policy(cli, "--hub", "--for", "report")
    report_member = policy(cli, "--member", "--for", "report")

    known = member_world(org)
    with assume_role_needs_the_role():
        result = cli("run", "--json")
        assert result.code == 0, result.stdout + result.stderr
        assert result.json()["counts"]["completed"] == 2, result.stdout
        known = member_world(org, known)  # the run's new keys, before one is deleted
        (leaked,) = org.keys(org.accounts["dev"], "ci-app")
        emergency = cli("rotate", "--access-key-id", leaked, "--emergency", "--yes")
        assert emergency.code == 0, emergency.stdout + emergency.stderr
        known = member_world(org, known)
        hub, member = split_by_principal(proxy, known)
        mark = len(proxy.requests_seen())
        report = cli("report", "--json")
        assert report.code == 0, report.stdout + report.stderr
        report_calls = split_by_principal(proxy, member_world(org, known), mark)

    assert {"sts:AssumeRole", "sts:GetAccessKeyInfo"} <= {a for a, _ in hub}
    assert {"iam:CreateAccessKey", "secretsmanager:PutSecretValue"} <= {a for a, _ in member}
    assert denied(hub_policy, hub) == []
    assert denied(member_policy, member) == []
    assert denied(report_hub, report_calls[0]) == []
    assert denied(report_member, report_calls[1]) == []
