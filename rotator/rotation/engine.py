"""``Engine``: the runtime for one policy, composed — ``Rotations`` (journal, driver, sinks,
clock), the ``Sweep`` that plans and dispatches, and the operator's ``Requests``. Entry
points build one (``rotator.app.open_engine``) and call one method."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from rotator.aws import Aws
from rotator.errors import InputError
from rotator.journal.base import Journal
from rotator.model import Plan, utcnow
from rotator.progress import NO_PROGRESS, ProgressFn
from rotator.rotation.emergency import Request
from rotator.rotation.org import OrgSweep
from rotator.rotation.report import Report, SweepResult
from rotator.rotation.requests import Requests
from rotator.rotation.rotations import Rotations
from rotator.rotation.steps import StepResult
from rotator.rotation.sweep import Sweep
from rotator.settings import Config


class Engine:
    """Sweeps and operator requests for one policy: against the caller's account, and with
    ``[accounts]`` over many (``org``)."""

    def __init__(
        self,
        *,
        config: Config,
        journal: Journal,
        aws: Aws,
        clock: Callable[[], datetime] = utcnow,
        owner: str | None = None,
    ) -> None:
        self.rotations = Rotations(
            config=config, journal=journal, aws=aws, clock=clock, owner=owner
        )
        self._sweep = Sweep(self.rotations)
        self._requests = Requests(self.rotations)
        # With [accounts]: the sweep over every account, each on its own session.
        self.org = (
            OrgSweep(config=config, journal=journal, aws=aws, clock=clock, owner=owner)
            if config.accounts is not None
            else None
        )

    async def plan(self, *, progress: ProgressFn = NO_PROGRESS) -> Plan:
        """What a sweep would do now, changing nothing."""
        return await self._sweep.plan(progress=progress)

    async def sweep(
        self,
        *,
        dry_run: bool = False,
        time_left: Callable[[], float] | None = None,
        progress: ProgressFn = NO_PROGRESS,
    ) -> SweepResult:
        """One sweep (``Sweep.run``); never raises for one decision's trouble."""
        return await self._sweep.run(dry_run=dry_run, time_left=time_left, progress=progress)

    async def rotate_now(
        self,
        request: Request,
        *,
        access_key_id: str | None = None,
        dry_run: bool = False,
        patience: timedelta | None = None,
        account: str | None = None,
    ) -> Report:
        """Rotate one credential now, on an operator's request (``Requests.rotate``). With
        ``[accounts]``, an access key is rotated in the account it belongs to, and
        ``account`` names the account of a ``--user`` (``OrgSweep.rotate_now``)."""
        if self.org is not None and (access_key_id is not None or account is not None):
            return await self.org.rotate_now(
                request,
                access_key_id=access_key_id,
                account=account,
                dry_run=dry_run,
                patience=patience,
            )
        if account is not None:
            raise InputError("--account needs an [accounts] section in the policy")
        return await self._requests.rotate(
            request, access_key_id=access_key_id, dry_run=dry_run, patience=patience
        )

    async def rollback(self, rotation_id: str) -> StepResult:
        """Roll back one rotation (``Requests.rollback``); with ``[accounts]`` in the
        rotation's own account (``OrgSweep.rollback``)."""
        if self.org is not None:
            return await self.org.rollback(rotation_id)
        return await self._requests.rollback(rotation_id)
