"""rotator.daemon.notify: one message per sweep, one per owner, to a real local webhook and to
SNS on the moto server; failures are logged as ``notify.failed`` and never raised."""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from rotator.aws import Aws
from rotator.daemon.notify import Notifier
from rotator.daemon.summary import (
    MAX_LINES,
    categories,
    owner_messages,
    summarise,
    sweep_message,
)
from rotator.model import Action, Outcome, Step
from rotator.rotation.report import Result
from rotator.settings import NotifySettings
from tests.support.moto import MotoSandbox
from tests.support.sweeps import ACCOUNT, new_id, old_id, plain, rotated, sweep
from tests.support.webhook import SECRET_PATH, webhook_server

HELD = "old key used 2h after the promotion"


def a_sweep() -> Any:
    return sweep(
        rotated("ci-a"),
        rotated("ci-b", (Step.CREATE, Step.VERIFY, Step.PROMOTE)),
        rotated("ci-c", (Step.DEACTIVATE,), last=Outcome.HELD, reason=HELD, action=Action.ADVANCE),
        plain("ci-d", Action.BLOCK, Result.BLOCKED, "2 active access keys"),
        rotated(
            "ci-e", (Step.CREATE,), last=Outcome.FAILED, reason="CreateAccessKey: LimitExceeded"
        ),
        rotated("ci-f", (Step.DEACTIVATE, Step.DELETE), action=Action.ADVANCE),
        plain("ci-g", Action.SKIP, Result.SKIPPED, "not due"),
    )


def settings(**values: Any) -> NotifySettings:
    return NotifySettings(**{"timeout": timedelta(seconds=2), **values})


# -- what a message says ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("ci-a", ["rotated"]),
        ("ci-b", ["rotated"]),
        ("ci-c", ["held"]),
        ("ci-d", ["blocked"]),
        ("ci-e", ["failed"]),
        ("ci-f", ["retired"]),
        ("ci-g", []),
    ],
)
def test_each_report_falls_in_the_categories_it_reached(user: str, expected: list[str]) -> None:
    (report,) = [r for r in a_sweep().reports if r.decision.user == user]
    assert categories(report) == expected


def test_one_sweep_message_summarises_rotated_held_blocked_failed() -> None:
    message = sweep_message(summarise(a_sweep()))
    first, *rest = message.text.splitlines()
    assert first == (
        f"rotator sweep run-test (account {ACCOUNT}): "
        "2 rotated, 1 retired, 1 held, 1 blocked, 1 failed"
    )
    body = "\n".join(rest)
    assert f"ci-a access-key: {old_id('ci-a')} -> {new_id('ci-a')}; old deleted" in body
    assert f"ci-b access-key: {old_id('ci-b')} -> {new_id('ci-b')}; old still active" in body
    assert f"ci-c access-key {old_id('ci-c')}: {HELD}" in body
    assert "ci-d access-key" in body and "2 active access keys" in body
    assert "LimitExceeded" in body
    assert "ci-g" not in body, "nothing happened to ci-g"
    assert message.subject.isascii() and len(message.subject) <= 100
    assert message.data["counts"]["rotated"] == 2
    assert message.owner is None


def test_a_long_category_is_cut_and_counted() -> None:
    result = sweep(*(rotated(f"u{i:03d}") for i in range(MAX_LINES + 7)))
    text = sweep_message(summarise(result)).text
    assert text.count(" -> ") == MAX_LINES
    assert "... and 7 more" in text


def test_each_owner_gets_one_message_about_their_changed_or_held_users_only() -> None:
    owners = {
        "ci-a": "alice@example.com",
        "ci-c": "alice@example.com",
        "ci-d": "alice@example.com",  # blocked: not a change, no owner message for it
        "ci-f": "bob@example.com",
        "ci-g": "bob@example.com",
    }
    messages = owner_messages(a_sweep(), owners)
    assert [m.owner for m in messages] == ["alice@example.com", "bob@example.com"]
    alice, bob = messages
    assert alice.data["users"] == ["ci-a", "ci-c"]
    assert "ci-d" not in alice.text
    assert "owned by alice@example.com" in alice.text.splitlines()[0]
    assert bob.data["users"] == ["ci-f"]
    assert "deleted" in bob.text


# -- sending ------------------------------------------------------------------------------


async def test_the_webhook_gets_one_slack_compatible_post_per_sweep() -> None:
    with webhook_server() as hook:
        notifier = Notifier(settings(webhook_url=hook.url), Aws())
        deliveries = await notifier.sweep_finished(a_sweep())
        (post,) = hook.received()
    assert [(d.channel, d.ok) for d in deliveries] == [("webhook", True)]
    assert post["text"].startswith("rotator sweep run-test")
    assert post["rotator"]["counts"]["held"] == 1
    assert hook.paths == [SECRET_PATH]


async def test_a_quiet_sweep_sends_nothing_unless_asked() -> None:
    quiet = sweep(plain("ci-g", Action.SKIP, Result.SKIPPED, "not due"))
    with webhook_server() as hook:
        assert await Notifier(settings(webhook_url=hook.url), Aws()).sweep_finished(quiet) == []
        await Notifier(settings(webhook_url=hook.url, send_empty=True), Aws()).sweep_finished(quiet)
        (post,) = hook.received()
    assert post["rotator"]["counts"] == dict.fromkeys(post["rotator"]["counts"], 0)


@pytest.mark.parametrize("problem", ["http-500", "refused", "timeout"])
async def test_a_failing_webhook_is_logged_never_raised_and_its_url_never_logged(
    problem: str,
) -> None:
    with webhook_server(
        status=500 if problem == "http-500" else 200, delay=4.0 * (problem == "timeout")
    ) as hook:
        url = hook.url
        if problem == "refused":
            with socket.socket() as sock:  # a port nothing listens on
                sock.bind(("127.0.0.1", 0))
                url = f"http://127.0.0.1:{sock.getsockname()[1]}{SECRET_PATH}"
        with capture_logs() as logs:
            deliveries = await Notifier(
                settings(webhook_url=url, timeout=timedelta(seconds=1)), Aws()
            ).sweep_finished(a_sweep())
    assert [(d.channel, d.ok) for d in deliveries] == [("webhook", False)]
    (failed,) = [e for e in logs if e["event"] == "notify.failed"]
    assert failed["channel"] == "webhook"
    expected = {"http-500": "HTTP 500", "refused": "cannot connect", "timeout": "timed out"}
    assert expected[problem] in failed["reason"]
    assert "s3cretW3bhookT0ken" not in json.dumps(logs, default=str)


def sns_queue(sandbox: MotoSandbox, topic: str, filter_owner: str | None = None) -> str:
    sqs = sandbox.client("sqs")
    name = f"notes-{filter_owner or 'all'}".replace("@", "-").replace(".", "-")
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    attributes = {"FilterPolicy": json.dumps({"owner": [filter_owner]})} if filter_owner else {}
    sandbox.client("sns").subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"], Attributes=attributes
    )
    return str(url)


def sns_received(sandbox: MotoSandbox, queue: str) -> list[dict[str, Any]]:
    answer = sandbox.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    return [json.loads(m["Body"]) for m in answer.get("Messages", [])]


async def test_sns_gets_the_sweep_and_owner_messages_with_owner_attributes(
    sandbox: MotoSandbox,
) -> None:
    """Owner tags are read from IAM; an SNS filter policy on ``owner`` routes a message to
    that owner's subscription."""
    for user, owner in (("ci-a", "alice@example.com"), ("ci-f", "bob@example.com")):
        sandbox.create_user(user, path="/ci/", tags={"owner-email": owner, "team": "x"})
    for user in ("ci-b", "ci-c"):  # changed or held, but no owner tag: no owner message
        sandbox.create_user(user, path="/ci/")
    topic = sandbox.client("sns").create_topic(Name="rotator")["TopicArn"]
    everything = sns_queue(sandbox, topic)
    alice_only = sns_queue(sandbox, topic, "alice@example.com")
    notifier = Notifier(settings(sns_topic_arn=topic, owner_tag="owner-email"), Aws())
    deliveries = await notifier.sweep_finished(a_sweep())
    assert [(d.channel, d.ok) for d in deliveries] == [("sns", True)] * 3
    got = sns_received(sandbox, everything)
    by_event = {m["MessageAttributes"]["event"]["Value"]: m for m in got}
    assert len(got) == 3 and set(by_event) == {"sweep", "owner"}
    assert by_event["sweep"]["Subject"].startswith(f"rotator {ACCOUNT}: 2 rotated")
    owners = sorted(
        m["MessageAttributes"]["owner"]["Value"] for m in got if "owner" in m["MessageAttributes"]
    )
    assert owners == ["alice@example.com", "bob@example.com"]
    (alice,) = sns_received(sandbox, alice_only)
    assert "ci-a access-key" in alice["Message"]
    assert "ci-f" not in alice["Message"]


async def test_sns_and_owner_lookup_failures_are_logged_not_raised(
    sandbox: MotoSandbox,
) -> None:
    with socket.socket() as sock:  # AWS unreachable: nothing listens on this port
        sock.bind(("127.0.0.1", 0))
        dead = Aws(endpoint_url=f"http://127.0.0.1:{sock.getsockname()[1]}", max_attempts=1)
        topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:rotator"
        with capture_logs() as logs:
            deliveries = await Notifier(
                settings(sns_topic_arn=topic, owner_tag="owner-email"), dead
            ).sweep_finished(a_sweep())
    failed = [e for e in logs if e["event"] == "notify.failed"]
    assert {e["channel"] for e in failed} == {"owner-tags", "sns"}
    assert {d.channel for d in deliveries if not d.ok} == {"owner-tags", "sns"}
    assert all("failed" in e["reason"] for e in failed)


async def test_a_missing_topic_is_a_logged_failure(sandbox: MotoSandbox) -> None:
    missing = f"arn:aws:sns:us-east-1:{ACCOUNT}:no-such-topic"
    with capture_logs() as logs:
        deliveries = await Notifier(settings(sns_topic_arn=missing), Aws()).sweep_finished(
            a_sweep()
        )
    assert [(d.channel, d.ok) for d in deliveries] == [("sns", False)]
    (failed,) = [e for e in logs if e["event"] == "notify.failed"]
    assert "Publish failed: NotFound" in failed["reason"]
