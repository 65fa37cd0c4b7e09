"""``rotator report --output asff``: the verdicts as AWS Security Finding Format findings.

A JSON array of findings (``SchemaVersion`` 2018-10-08) for ``aws securityhub
batch-import-findings --findings file://F``: one per credential (access key, console
password, server certificate) and CIS control of the benchmark whose verdict is pass or
fail (n/a gives none; a check the benchmark has no control for, none). Each is written
as it is made, one a line, so a report of 10,000 users is never held twice.

The product is the account's default one (``product/{account}/default``): Security Hub
takes such findings only from the account they are about, so in org mode each finding
names its own account and is imported with that account's credentials (docs/report.md).
``Compliance.SecurityControlId`` is left out: it names Security Hub's own control
findings; the matching Security Hub controls are in ``ProductFields``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from rotator.benchmarks_cis import CHECKS, Check

if TYPE_CHECKING:
    from rotator.compliance import Report

SCHEMA_VERSION = "2018-10-08"
TYPES = (
    "Software and Configuration Checks/Industry and Regulatory Standards/"
    "CIS AWS Foundations Benchmark"
)
_DESCRIPTION = 1024  # ASFF's limit on Description
_FIELD = 2048  # ASFF's limit on a ProductFields value


def _utc(report: Report) -> str:
    return report.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Maker:
    """The findings of one account's report, in ``region`` of ``partition``."""

    def __init__(self, report: Report, region: str, partition: str) -> None:
        self.report, self.region, self.partition = report, region, partition
        account = report.account
        self.product = f"arn:{partition}:securityhub:{region}:{account}:product/{account}/default"
        self.when = _utc(report)

    def finding(
        self,
        *,
        check: Check,
        verdict: str,
        subject: str,
        what: str,
        resource: dict[str, Any],
        fields: dict[str, str],
    ) -> dict[str, Any] | None:
        """One finding, or None for a verdict that is neither pass nor fail or a check
        the benchmark has no control for."""
        mark = self.report.benchmark
        number = mark.control(check)
        if number is None or verdict not in ("pass", "fail"):
            return None
        mapped = CHECKS[check]
        failed = verdict == "fail"
        severity = {"Label": "MEDIUM" if failed else "INFORMATIONAL"}
        said = "fails" if failed else "passes"
        description = f"{what} {said} {mark.title} {number}: {mapped.title}."
        if fields.get("rotator/action"):
            description += f" rotator: {fields['rotator/action']}: {fields['rotator/reason']}"
        hub = " ".join(mapped.security_hub)
        product_fields = {
            "rotator/benchmark": mark.name,
            "rotator/check": str(check),
            **({"rotator/security-hub-controls": hub} if hub else {}),
            **{k: _cut(v, _FIELD) for k, v in fields.items() if v},
        }
        return {
            "SchemaVersion": SCHEMA_VERSION,
            "Id": f"rotator/{self.report.account}/{subject}/{mark.name}/{number}",
            "ProductArn": self.product,
            "ProductName": "rotator",
            "GeneratorId": f"rotator/{mark.name}/{number}",
            "AwsAccountId": self.report.account,
            "Types": [TYPES],
            "CreatedAt": self.when,
            "UpdatedAt": self.when,
            "Severity": severity,
            "FindingProviderFields": {"Severity": severity, "Types": [TYPES]},
            "Title": f"CIS {number}: {mapped.title}",
            "Description": _cut(description, _DESCRIPTION),
            "Resources": [{"Partition": self.partition, "Region": self.region, **resource}],
            "Compliance": {
                "Status": "FAILED" if failed else "PASSED",
                "RelatedRequirements": [f"{mark.title}/{number}"],
            },
            "RecordState": "ACTIVE",
            "ProductFields": product_fields,
        }

    def user_arn(self, user: str, arn: str) -> str:
        if arn.startswith("arn:"):
            return arn
        return f"arn:{self.partition}:iam::{self.report.account}:user/{user}"

    def all(self) -> Iterator[dict[str, Any]]:
        """Every finding of the report: credentials, then server certificates."""
        for row in self.report.rows:
            if row.kind.value == "access-key":
                what = f"Access key {row.credential_id} of IAM user {row.user}"
                resource = {
                    "Type": "AwsIamAccessKey",
                    "Id": row.credential_id,
                    "Details": {
                        "AwsIamAccessKey": {"PrincipalName": row.user, "PrincipalType": "IAMUser"}
                    },
                }
            else:
                what = f"The console password of IAM user {row.user}"
                resource = {
                    "Type": "AwsIamUser",
                    "Id": self.user_arn(row.user, row.arn),
                    "Details": {"AwsIamUser": {"UserName": row.user}},
                }
            fields = {"rotator/action": row.action, "rotator/reason": row.reason}
            for check, verdict in row.verdicts.items():
                found = self.finding(
                    check=check,
                    verdict=str(verdict),
                    subject=f"{row.user}/{row.credential_id}",
                    what=what,
                    resource=resource,
                    fields=fields,
                )
                if found is not None:
                    yield found
        for cert in self.report.certificates:
            found = self.finding(
                check=Check.EXPIRED_CERTIFICATES,
                verdict=str(cert.verdict),
                subject=f"server-certificate/{cert.name}",
                what=f"IAM server certificate {cert.name} ({cert.when(self.report.generated_at)})",
                resource={
                    "Type": "Other",
                    "Id": cert.name,
                    "Details": {"Other": {"ServerCertificateName": cert.name}},
                },
                fields={},
            )
            if found is not None:
                yield found


def findings(report: Report, *, region: str, partition: str) -> Iterator[dict[str, Any]]:
    """The ASFF findings of one account's ``report``."""
    return _Maker(report, region, partition).all()


def write_asff(out: IO[str], reports: Sequence[Report], *, region: str, partition: str) -> None:
    """One JSON array of every report's findings (each account's its own), a finding a
    line."""
    out.write("[")
    first = True
    for report in reports:
        for found in findings(report, region=region, partition=partition):
            out.write("\n" if first else ",\n")
            out.write(json.dumps(found))
            first = False
    out.write("\n]\n")
