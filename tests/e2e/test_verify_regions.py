"""Multi-region verification: a new access key is promoted only once it answers from the
STS endpoint of every ``[verify] regions``, ``consecutive`` times in a row. The fault proxy
models IAM's regional propagation by rejecting the new key in one region for a while."""

from __future__ import annotations

import pytest

from tests.support.cli import Cli
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

USER = "ci-regions"
DEFAULT_VERIFY = '[verify]\nattempts = 3\ninitial_delay = "1s"\n'
LAG = 4.0  # seconds eu-west-1 rejects the new key


def write_policy(cli: Cli, verify: str) -> None:
    cli.write_policy(max_age="90d")
    text = cli.config.read_text()
    assert DEFAULT_VERIFY in text
    cli.config.write_text(text.replace(DEFAULT_VERIFY, verify))


def verify_events(cli: Cli) -> list[dict[str, object]]:
    return [
        e
        for e in cli.audit_events()
        if e["event"] == "rotation.step" and e.get("user") == USER and e["step"] == "verify"
    ]


def test_promotion_waits_until_every_region_accepts_the_key_twice_in_a_row(
    cli: Cli, sandbox: MotoSandbox, aws_env: str
) -> None:
    old = sandbox.create_user(USER, path="/ci/", keys=1)[0]["AccessKeyId"]
    sandbox.age_keys(USER, days=120)
    write_policy(
        cli,
        '[verify]\nregions = ["us-east-1", "eu-west-1"]\nconsecutive = 2\n'
        'attempts = 10\ninitial_delay = "1s"\nmax_delay = "1s"\n',
    )
    with FaultProxy(aws_env) as proxy:
        proxy.reject_young_keys(LAG, region="eu-west-1")
        cli.endpoint = proxy.url
        result = cli("run", "--json")
        assert result.code == 0, result.stderr
        doc = cli.sink_document(sandbox.account(), USER)
        new = doc["current"]["AccessKeyId"]
        answers = proxy.sts_answers(new)
    assert new != old
    europe = [status for region, status in answers if region == "eu-west-1"]
    america = [status for region, status in answers if region == "us-east-1"]
    # eu-west-1 refused until the key was LAG seconds old, then answered twice in a row.
    assert 403 in europe
    assert europe[-2:] == [200, 200]
    assert europe == [403] * europe.index(200) + [200] * (len(europe) - europe.index(200))
    assert america == [200, 200]  # accepted at once: two in a row and done
    # Promoted after verification, which took as long as the slowest region.
    steps = cli.steps(USER)
    assert steps.index(("verify", "done")) < steps.index(("promote", "done"))
    [done] = [e for e in verify_events(cli) if e["outcome"] == "done"]
    assert isinstance(done["propagation_s"], float)
    assert LAG - 1.0 <= done["propagation_s"] < 30
    assert old not in sandbox.keys(USER)  # zero-duration policy: the rotation completed


def test_a_region_that_never_accepts_the_key_leaves_the_old_key_untouched(
    cli: Cli, sandbox: MotoSandbox, aws_env: str
) -> None:
    original = sandbox.create_user(USER, path="/ci/", keys=1)[0]
    old = original["AccessKeyId"]
    sandbox.age_keys(USER, days=120)
    write_policy(
        cli,
        '[verify]\nregions = ["us-east-1", "ap-southeast-2"]\n'
        'attempts = 3\ninitial_delay = "1s"\nmax_delay = "1s"\n',
    )
    with FaultProxy(aws_env) as proxy:
        proxy.reject_young_keys(3600, region="ap-southeast-2")
        cli.endpoint = proxy.url
        result = cli("run", "--json")
        doc = cli.sink_document(sandbox.account(), USER)
        pending = doc["pending"]["AccessKeyId"]
        answers = proxy.sts_answers(pending)
    assert result.code != 0
    # Verified nowhere as a whole: the step is left for the next sweep, nothing promoted.
    events = verify_events(cli)
    assert [e["outcome"] for e in events] == ["retry"]
    assert "ap-southeast-2: 3 attempts failed (last: InvalidClientTokenId)" in str(
        events[0]["reason"]
    )
    assert "propagation_s" not in events[0]
    assert ("promote", "done") not in cli.steps(USER)
    assert [s for r, s in answers if r == "ap-southeast-2"] == [403, 403, 403]
    assert [s for r, s in answers if r == "us-east-1"] == [200, 200]
    # The old key is untouched: active, and still what consumers read.
    assert sandbox.keys(USER)[old] == "Active"
    assert doc["current"] is None or doc["current"]["AccessKeyId"] == old
    assert sandbox.caller_arn(old, original["SecretAccessKey"]).endswith(f"user/ci/{USER}")
