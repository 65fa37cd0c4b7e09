"""The report's formats with hostile user text: each escapes it for its own reader (rich,
a spreadsheet, a Markdown renderer, a browser), keeps one record per line or row, and
the table keeps to its width with rows of at most three lines."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest
from rich.console import Console

from rotator.benchmarks_cis import benchmark
from rotator.compliance import Report, evaluate
from rotator.entrypoints.report_asff import write_asff
from rotator.entrypoints.report_formats import (
    columns,
    lines_after,
    print_table,
    table,
    write_csv,
    write_markdown,
    write_text,
)
from rotator.entrypoints.report_html import write_html
from rotator.model import Action, Credential, Decision, Holder, Inventory, Kind, Plan, Status
from tests.support.asff import ASFF_SCHEMA

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
HOSTILE = '[b]"><script>alert(1)</script>|x'
CIS_V5 = ("1.11", "1.12", "1.13")
REASON = "a reason with a | pipe,\ta tab and\na line break " + "and many words " * 20


def key(cid: str, age: int) -> Credential:
    return Credential(
        kind=Kind.ACCESS_KEY, credential_id=cid, status=Status.ACTIVE, created=NOW - timedelta(age)
    )


@pytest.fixture
def report() -> Report:
    holders = (
        Holder(account="123456789012", name=HOSTILE, arn="a", credentials=(key("AKIA1" * 4, 100),)),
        Holder(
            account="123456789012", name="=SUM(A1)", arn="b", credentials=(key("AKIA2" * 4, 1),)
        ),
    )
    decision = Decision(
        account="123456789012",
        user=HOSTILE,
        kind=Kind.ACCESS_KEY,
        rule="r",
        action=Action.ROTATE,
        reason=REASON,
        credential_id="AKIA1" * 4,
    )
    return evaluate(
        Inventory(account="123456789012", holders=holders),
        Plan(decisions=(decision,)),
        [],
        NOW,
        source="test",
        benchmark=benchmark("cis-v5.0"),
    )


def test_csv_quotes_and_defuses_formulas(report: Report) -> None:
    out = io.StringIO()
    write_csv(out, [report])
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["user"] for r in rows] == ["'=SUM(A1)", HOSTILE]
    assert rows[1]["rotator_reason"] == REASON, "quoted, not split"
    assert (rows[1]["cis_1.13"], rows[1]["IAM.3"]) == ("fail", "fail")


def test_text_is_one_record_a_line_with_no_tab_inside_a_field(report: Report) -> None:
    out = io.StringIO()
    write_text(out, [report])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert {len(line.split("\t")) for line in lines} == {len(columns(report.benchmark))}


def test_markdown_cells_cannot_open_a_cell_html_or_a_link(report: Report) -> None:
    out = io.StringIO()
    write_markdown(out, [report])
    rows = [line for line in out.getvalue().splitlines() if line.startswith("| credential")]
    assert len(rows) == 2
    assert {line.replace("\\|", "").count("|") for line in rows} == {len(columns(report.benchmark))}
    assert "<script>" not in out.getvalue() and "\\<script\\>" in out.getvalue()


def test_html_escapes_user_text_and_fetches_nothing(report: Report) -> None:
    out = io.StringIO()
    write_html(out, [report])
    page = out.getvalue()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page and "https://" not in page
    assert page.count("<svg") == 1 and "default-src 'none'" in page


@pytest.mark.parametrize("width", [80, 100, 160])
def test_the_table_keeps_its_width_ids_whole_and_rows_of_three_lines(
    report: Report, width: int
) -> None:
    console = Console(width=width, file=io.StringIO(), no_color=True, force_terminal=False)
    console.print(table(report, width=width))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= width
    body = [line for line in lines if line.startswith("│")]
    assert len(body) <= 2 * 3
    assert '[b]"><scr' in shown, "user text is not markup"
    users = [line.split("│")[1].strip() for line in body]
    assert HOSTILE in users, "the user's name is whole, on a line of its own"
    assert sum("AKIA1" * 4 in line for line in body) >= 1, "the ID is whole"
    assert "…" in shown, "the long reason is cut"
    everything = " ".join(" ".join(lines_after(report)).split())
    assert "failures per CIS control (cis-v5.0): 1.11: 1, 1.12: 0, 1.13: 1, 1.18: 0" in everything


def test_a_name_too_long_for_80_columns_is_cut_on_its_own_line_and_the_id_kept() -> None:
    """IAM allows 64-character user names: past what 80 columns leave beside the verdicts
    and a readable reason (40), the name is cut with "…"; the key ID stays whole."""
    name = "svc-" + "x" * 60
    holders = (Holder(account="1", name=name, arn="a", credentials=(key("AKIA2" * 4, 100),)),)
    report = evaluate(Inventory(account="1", holders=holders), None, [], NOW)
    console = Console(width=80, file=io.StringIO(), no_color=True, force_terminal=False)
    console.print(table(report, width=80))
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert max(len(line) for line in lines) <= 80
    cells = [line.split("│")[1].strip() for line in lines if line.startswith("│")]
    assert cells[0].endswith("…") and name.startswith(cells[0][:-1]), cells
    assert len(cells[0]) >= 40
    assert "AKIA2" * 4 in cells


def test_a_long_table_is_printed_in_pieces_that_read_as_one_table() -> None:
    """600 keys: rendered 256 rows at a time (never held whole), joined without the
    pieces' inner borders: one title, one header, three lines a row, one bottom edge."""
    holders = tuple(
        Holder(account="1", name=f"user-{n:04d}", arn="a", credentials=(key(f"AKIA{n:016d}", n),))
        for n in range(600)
    )
    report = evaluate(Inventory(account="1", holders=holders), None, [], NOW)
    console = Console(width=80, file=io.StringIO(), no_color=True, force_terminal=False)
    print_table(console, report)
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 5 + 600 * 3
    edges = [line[0] for line in lines[1:] if not line.startswith("│")]
    assert edges == ["┏", "┃", "┡", "└"]
    ids = [line.split("│")[2].strip() for line in lines if line.startswith("│ user-")]
    assert ids == [f"AKIA{n:016d}" for n in range(600)]


def test_asff_findings_have_the_required_fields_and_pass_botocores_validation(
    report: Report,
) -> None:
    """One finding per credential and control with a pass or fail verdict, in the shape
    ``BatchImportFindings`` takes (botocore checks it against the Security Hub model, as
    the AWS CLI does before it sends anything)."""
    import botocore.session
    from botocore.validate import ParamValidator

    out = io.StringIO()
    write_asff(out, [report], region="cn-north-1", partition="aws-cn")
    found = json.loads(out.getvalue())
    for finding in found:
        jsonschema.validate(finding, ASFF_SCHEMA)
    # cis-v5.0: 1.11 unused, 1.12 one active key, 1.13 rotated, for each of the two keys.
    assert sorted((f["Resources"][0]["Id"], f["GeneratorId"]) for f in found) == sorted(
        (cid, f"rotator/cis-v5.0/{n}") for cid in ("AKIA1" * 4, "AKIA2" * 4) for n in CIS_V5
    )
    assert len({f["Id"] for f in found}) == len(found), "each finding its own Id"
    by = {(f["Resources"][0]["Id"], f["GeneratorId"].rsplit("/", 1)[1]): f for f in found}
    old = by["AKIA1" * 4, "1.13"]
    assert old["Id"] == f"rotator/123456789012/{HOSTILE}/{'AKIA1' * 4}/cis-v5.0/1.13"
    assert old["ProductArn"] == (
        "arn:aws-cn:securityhub:cn-north-1:123456789012:product/123456789012/default"
    )
    assert old["Compliance"] == {
        "Status": "FAILED",
        "RelatedRequirements": ["CIS AWS Foundations Benchmark v5.0.0/1.13"],
    }
    assert old["Severity"] == {"Label": "MEDIUM"} == old["FindingProviderFields"]["Severity"]
    assert old["CreatedAt"] == old["UpdatedAt"] == "2026-12-03T12:00:00Z"
    assert (old["Resources"][0]["Partition"], old["Resources"][0]["Region"]) == (
        "aws-cn",
        "cn-north-1",
    )
    assert old["ProductFields"]["rotator/action"] == "rotate"
    assert old["ProductFields"]["rotator/security-hub-controls"] == "IAM.3"
    assert old["Description"].endswith(f"rotator: rotate: {REASON}")
    fresh = by["AKIA2" * 4, "1.13"]
    assert (fresh["Compliance"]["Status"], fresh["Severity"]) == (
        "PASSED",
        {"Label": "INFORMATIONAL"},
    )

    model = botocore.session.get_session().get_service_model("securityhub")
    shape = model.operation_model("BatchImportFindings").input_shape
    errors = ParamValidator().validate({"Findings": found}, shape)
    assert not errors.has_errors(), errors.generate_report()


def test_asff_skips_not_applicable_verdicts_and_controls_the_benchmark_lacks() -> None:
    """A console password has no rotation or one-key verdict; cis-v7.0 has no one-key
    control: a password gives one finding (2.11), a key two (2.11, 2.12); a user's ARN is
    the password's resource."""
    password = Credential(
        kind=Kind.LOGIN_PROFILE, credential_id="ann", status=Status.ACTIVE, created=NOW
    )
    arn = "arn:aws:iam::123456789012:user/people/ann"
    holders = (
        Holder(account="123456789012", name="ann", arn=arn, credentials=(password,)),
        Holder(account="123456789012", name="bob", arn="", credentials=(key("AKIA3" * 4, 1),)),
    )
    long = Decision(
        account="123456789012",
        user="bob",
        kind=Kind.ACCESS_KEY,
        rule="r",
        action=Action.SKIP,
        reason="why " * 1000,
        credential_id="AKIA3" * 4,
    )
    inventory = Inventory(account="123456789012", holders=holders)
    report = evaluate(inventory, Plan(decisions=(long,)), [], NOW)
    out = io.StringIO()
    write_asff(out, [report], region="us-east-1", partition="aws")
    found = json.loads(out.getvalue())
    assert [(f["Resources"][0]["Type"], f["GeneratorId"]) for f in found] == [
        ("AwsIamUser", "rotator/cis-v7.0/2.11"),
        ("AwsIamAccessKey", "rotator/cis-v7.0/2.11"),
        ("AwsIamAccessKey", "rotator/cis-v7.0/2.12"),
    ]
    assert found[0]["Resources"][0]["Id"] == arn
    assert "rotator/security-hub-controls" in found[0]["ProductFields"]
    description, fields = found[1]["Description"], found[1]["ProductFields"]
    assert len(description) == 1024 and description.endswith("…"), "cut to ASFF's limit"
    assert len(fields["rotator/reason"]) == 2048

    out = io.StringIO()
    write_asff(out, [], region="us-east-1", partition="aws")
    assert json.loads(out.getvalue()) == []
