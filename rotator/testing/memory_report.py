"""The in-memory IAM twin's credential report and server certificates.

The credential report behaves as IAM documents it: ``GenerateCredentialReport`` starts a
new report only if none exists or the latest is more than four hours old (answering
``STARTED``, then ``INPROGRESS`` while it is being made, then ``COMPLETE``); the report is
a snapshot taken when it completes (so it goes stale); ``GetCredentialReport`` answers
``ReportNotPresent`` before the first, ``ReportInProgress`` while the first is being made and
``ReportExpired`` once the latest is more than four hours old.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from rotator.testing.memory_state import (
    State,
    User,
    client_error,
    ok,
    page,
)

REPORT_LIFETIME = timedelta(hours=4)
HEADER = (  # the report's first line, as IAM writes it
    "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,"
    "password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,"
    "access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,"
    "access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,"
    "access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,"
    "cert_1_last_rotated,cert_2_active,cert_2_last_rotated"
)
COLUMNS = HEADER.split(",")


def _iso(when: datetime | None, missing: str = "N/A") -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S+00:00") if when is not None else missing


def _user_row(user: User) -> dict[str, str]:
    profile = user.profile
    row = {
        "user": user.name,
        "arn": user.arn,
        "user_creation_time": _iso(user.created),
        "password_enabled": "true" if profile else "false",
        "password_last_used": _iso(user.password_last_used, "no_information" if profile else "N/A"),
        "password_last_changed": _iso(profile.changed if profile else None),
        "password_next_rotation": "N/A",
        "mfa_active": "true" if user.mfa_active else "false",
    }
    for n in (1, 2):
        key = user.keys[n - 1] if len(user.keys) >= n else None
        used = key.last_used if key else None
        row |= {
            f"access_key_{n}_active": "true" if key and key.status == "Active" else "false",
            f"access_key_{n}_last_rotated": _iso(key.created if key else None),
            f"access_key_{n}_last_used_date": _iso(used),
            f"access_key_{n}_last_used_region": key.last_region if key and used else "N/A",
            f"access_key_{n}_last_used_service": key.last_service if key and used else "N/A",
            f"cert_{n}_active": "false",
            f"cert_{n}_last_rotated": "N/A",
        }
    return row


class ReportMixin(State):
    """``GenerateCredentialReport``, ``GetCredentialReport``, ``ListServerCertificates``."""

    report_polls = 1  # calls after the start before a report completes (tests may change)
    _report: tuple[datetime, bytes] | None = None  # (GeneratedTime, CSV)
    _generating: int | None = None  # polls left, while a report is being made

    def _render_report(self) -> bytes:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        root = dict.fromkeys(COLUMNS, "not_supported")
        root |= {"user": "<root_account>", "arn": f"arn:aws:iam::{self.account}:root"}
        root |= {"user_creation_time": _iso(datetime(2015, 1, 1, tzinfo=UTC))}
        writer.writerow(root)
        for user in sorted(self.users.values(), key=lambda u: u.name):
            writer.writerow(_user_row(user))
        return out.getvalue().encode()

    def _poll_report(self) -> None:
        """One call's worth of progress on a report being made."""
        if self._generating is None:
            return
        self._generating -= 1
        if self._generating > 0:
            return
        self._generating = None
        self._report = (self.clock(), self._render_report())

    def _fresh(self) -> bool:
        return self._report is not None and self.clock() - self._report[0] < REPORT_LIFETIME

    async def generate_credential_report(self) -> dict[str, Any]:
        self._call("GenerateCredentialReport")
        if self._generating is not None:
            self._poll_report()
            if self._generating is not None or not self._fresh():
                return ok({"State": "INPROGRESS"})
            return ok({"State": "COMPLETE"})
        if self._fresh():
            return ok({"State": "COMPLETE"})
        self._generating = self.report_polls
        return ok(
            {
                "State": "STARTED",
                "Description": "No report exists. Starting a new report generation",
            }
        )

    async def get_credential_report(self) -> dict[str, Any]:
        self._call("GetCredentialReport")
        self._poll_report()
        if self._report is None:
            if self._generating is not None:
                raise client_error(
                    "GetCredentialReport", "ReportInProgress", "Report is in progress", 404
                )
            raise client_error(
                "GetCredentialReport", "ReportNotPresent", "Credential report not present", 410
            )
        if not self._fresh():
            raise client_error("GetCredentialReport", "ReportExpired", "Report expired", 410)
        generated, content = self._report
        return ok({"Content": content, "ReportFormat": "text/csv", "GeneratedTime": generated})

    # -- server certificates (read-only here: the report's expired-certificate check) ---

    async def list_server_certificates(
        self, *, PathPrefix: str = "/", Marker: str | None = None, MaxItems: int | None = None
    ) -> dict[str, Any]:
        self._call("ListServerCertificates")
        found = [c for c in self.server_certificates if c.path.startswith(PathPrefix)]
        chunk, paging = page(found, Marker, MaxItems)
        listed = [
            {
                "Path": c.path,
                "ServerCertificateName": c.name,
                "ServerCertificateId": c.certificate_id,
                "Arn": f"arn:aws:iam::{self.account}:server-certificate{c.path}{c.name}",
                "UploadDate": c.uploaded,
                "Expiration": c.expiration,
            }
            for c in chunk
        ]
        return ok({"ServerCertificateMetadataList": listed, **paging})
