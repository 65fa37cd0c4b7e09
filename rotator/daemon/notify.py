"""Notifications after each sweep: a webhook (Slack-compatible JSON) and/or an SNS topic.

``Notifier.sweep_finished`` builds the messages (``rotator.daemon.summary``) and sends each
to every configured channel. Per-owner messages need the users' tags: the owner tag is read
with ``ListUserTags`` for the few users whose credentials changed (the inventory fetches
tags only for rules that select by tag). A failure to notify is logged as a
``notify.failed`` event and counted, never raised: it must not stop the daemon. The webhook
URL is a secret (its path is the webhook's token): it is registered with the redaction
registry and never logged; failures name the HTTP status or the error type only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp

from rotator import audit, redaction
from rotator.aws import Aws, aws_errors
from rotator.daemon.summary import (
    Message,
    owner_messages,
    owner_users,
    summarise,
    sweep_message,
    webhook_payload,
)
from rotator.errors import NoSuchEntity, RotatorError
from rotator.inventory import user_tags
from rotator.rotation.report import SweepResult
from rotator.settings import NotifySettings

NOTIFY_SENT = "notify.sent"
NOTIFY_FAILED = "notify.failed"
OWNER_LOOKUPS = 8  # ListUserTags calls at once


class NotifyError(RotatorError):
    """A channel refused a message; the text names no secret."""


@dataclass(frozen=True)
class Delivery:
    """The fate of one message on one channel."""

    channel: str  # "webhook", "sns" or "owner-tags" (the tag lookup)
    ok: bool


def describe(exc: BaseException) -> str:
    """Why a send failed, without the webhook URL (aiohttp puts it in some messages)."""
    if isinstance(exc, RotatorError):
        return redaction.scrub(str(exc))
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"HTTP {exc.status}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}"
    return type(exc).__name__


async def post_webhook(session: aiohttp.ClientSession, url: str, message: Message) -> None:
    """POST the message as Slack-compatible JSON; raises unless the answer is 2xx. The
    session carries the timeout."""
    async with session.post(url, json=webhook_payload(message)) as answer:
        if not 200 <= answer.status < 300:
            raise NotifyError(f"webhook answered HTTP {answer.status}")


def sns_attributes(message: Message, account: str) -> dict[str, Any]:
    """SNS message attributes: subscriptions can filter on ``event`` and ``owner``."""
    attributes = {
        "event": "owner" if message.owner else "sweep",
        "account": account,
        **({"owner": message.owner} if message.owner else {}),
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}


async def publish_sns(sns: Any, topic_arn: str, message: Message, account: str) -> None:
    """Publish to the topic (the subject is the summary line). Raises ``AwsError``."""
    with aws_errors("Publish", topic=topic_arn):
        await sns.publish(
            TopicArn=topic_arn,
            Subject=message.subject,
            Message=message.text,
            MessageAttributes=sns_attributes(message, account),
        )


def topic_region(topic_arn: str) -> str:
    """The region of ``arn:aws:sns:REGION:ACCOUNT:NAME``."""
    return topic_arn.split(":")[3]


Send = Callable[[Message], Awaitable[None]]


def channel_results(settings: NotifySettings) -> dict[str, tuple[str, ...]]:
    """The channels ``settings`` enables, each with the results it can report (for the
    metrics: a tag lookup is counted only when it fails)."""
    found: dict[str, tuple[str, ...]] = {}
    if settings.webhook_url is not None:
        found["webhook"] = ("sent", "failed")
    if settings.sns_topic_arn is not None:
        found["sns"] = ("sent", "failed")
    if settings.enabled and settings.owner_tag:
        found["owner-tags"] = ("failed",)
    return found


class Notifier:
    """Sends a sweep's messages to the configured channels."""

    def __init__(self, settings: NotifySettings, aws: Aws) -> None:
        self.settings = settings
        self.aws = aws
        if settings.webhook_url is not None:
            redaction.register(settings.webhook_url.get_secret_value())
        self._log = audit.get_logger()

    def messages_for(self, result: SweepResult, owners: dict[str, str]) -> list[Message]:
        """The sweep message (unless there is nothing to say) and the owners' messages."""
        summary = summarise(result)
        found = [] if summary.empty and not self.settings.send_empty else [sweep_message(summary)]
        return found + owner_messages(result, owners)

    async def sweep_finished(
        self, result: SweepResult, *, owners: bool = True, owners_in: Aws | None = None
    ) -> list[Delivery]:
        """Notify about ``result``; every failure is logged and returned, never raised.
        ``owners_in``: where the users' owner tags are read (a member account's session;
        default: this notifier's own); ``owners=False``: no per-owner messages."""
        if not self.settings.enabled:
            return []
        deliveries: list[Delivery] = []
        found: dict[str, str] = {}
        if owners and self.settings.owner_tag:
            found, lookups = await self._owners(sorted(owner_users(result)), owners_in or self.aws)
            deliveries += lookups
        messages = self.messages_for(result, found)
        if not messages:
            return deliveries
        async with AsyncExitStack() as stack:
            channels = await self._channels(stack, result.account)
            sent = await asyncio.gather(
                *(self._send(name, send, m) for m in messages for name, send in channels)
            )
        deliveries += sent
        self._log.info(
            NOTIFY_SENT,
            messages=len(messages),
            delivered=sum(d.ok for d in sent),
            failed=sum(not d.ok for d in sent),
        )
        return deliveries

    async def _channels(self, stack: AsyncExitStack, account: str) -> list[tuple[str, Send]]:
        channels: list[tuple[str, Send]] = []
        timeout = self.settings.timeout.total_seconds()
        if self.settings.webhook_url is not None:
            url = self.settings.webhook_url.get_secret_value()
            session = await stack.enter_async_context(
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
            )

            async def webhook(message: Message) -> None:
                await post_webhook(session, url, message)

            channels.append(("webhook", webhook))
        if self.settings.sns_topic_arn is not None:
            arn = self.settings.sns_topic_arn
            sns = await stack.enter_async_context(self.aws.client("sns", region=topic_region(arn)))

            async def publish(message: Message) -> None:
                await asyncio.wait_for(publish_sns(sns, arn, message, account), timeout)

            channels.append(("sns", publish))
        return channels

    async def _send(self, channel: str, send: Send, message: Message) -> Delivery:
        try:
            await send(message)
        except Exception as exc:  # a notification must never stop the daemon
            self._failed(channel, describe(exc), owner=message.owner is not None)
            return Delivery(channel, False)
        return Delivery(channel, True)

    async def _owners(self, users: list[str], aws: Aws) -> tuple[dict[str, str], list[Delivery]]:
        """user -> owner tag value for ``users`` that have the tag; failed lookups logged."""
        tag = self.settings.owner_tag
        if not users or tag is None:
            return {}, []
        limit = asyncio.Semaphore(OWNER_LOOKUPS)
        found: dict[str, str] = {}
        failures: list[Delivery] = []
        try:
            async with aws.client("iam") as iam:

                async def one(user: str) -> None:
                    async with limit:
                        try:
                            tags = await user_tags(iam, user)
                        except NoSuchEntity:
                            return  # deleted since the sweep: nobody to tell
                        except RotatorError as exc:
                            self._failed("owner-tags", describe(exc), user=user)
                            failures.append(Delivery("owner-tags", False))
                            return
                    if tags.get(tag):
                        found[user] = tags[tag]

                await asyncio.gather(*(one(u) for u in users))
        except Exception as exc:  # the client could not even be made
            self._failed("owner-tags", describe(exc))
            failures.append(Delivery("owner-tags", False))
        return found, failures

    def _failed(self, channel: str, reason: str, **context: Any) -> None:
        self._log.warning(NOTIFY_FAILED, channel=channel, reason=reason, **context)
