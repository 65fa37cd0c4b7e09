"""``rotator report`` end to end against a seeded moto account, through the real CLI: key
IDs (not the credential report's ``access_key_1``), one active key counted per user, the
control numbers of every CIS version, what rotator does about each key, every output
format (the JSON against the schema shipped with the package, the HTML page in a real
headless browser), the table at 80 columns on a terminal, and the IAM calls it makes.

moto reports every server certificate as expired in 2012 (docs/passwords-ssh-service.md),
so the seeded certificate fails the expired-certificates control.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from rotator.compliance import REPORT_ACTIONS
from rotator.model import utcnow
from tests.support import iam_seed
from tests.support.asff import ASFF_SCHEMA
from tests.support.cli import Cli, Result
from tests.support.faults import FaultProxy
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

# Written out here, not read from rotator/benchmarks_cis.py: the control numbers as the
# benchmarks publish them (unused 45d, one active key, rotated 90d, expired certificates).
NUMBERS: dict[str, tuple[str, str | None, str, str]] = {
    "cis-v1.4": ("1.12", "1.13", "1.14", "1.19"),
    "cis-v1.5": ("1.12", "1.13", "1.14", "1.19"),
    "cis-v2.0": ("1.12", "1.13", "1.14", "1.19"),
    "cis-v3.0": ("1.12", "1.13", "1.14", "1.19"),
    "cis-v4.0": ("1.12", "1.13", "1.14", "1.19"),
    "cis-v5.0": ("1.11", "1.12", "1.13", "1.18"),
    "cis-v6.0": ("2.11", "2.12", "2.13", "2.18"),
    "cis-v7.0": ("2.11", None, "2.12", "2.17"),
}
# The seeded account fails: one unused key (idle), two users with two active keys (four
# keys), one old key, one expired certificate.
FAILURES = (1, 2, 1, 1)
HOSTILE = "x<b>y&z"  # IAM would refuse it; moto does not: user text is escaped everywhere
FORMULA = "=1+2"  # a valid IAM user name that a spreadsheet would run


@pytest.fixture
def keys(cli: Cli, sandbox: MotoSandbox) -> dict[str, list[str]]:
    """The seeded account; returns each user's key IDs."""
    now = utcnow()
    made: dict[str, list[str]] = {}

    def user(name: str, n: int, *, path: str = "/ci/", age: int = 0) -> list[str]:
        made[name] = [k["AccessKeyId"] for k in sandbox.create_user(name, path=path, keys=n)]
        if age:
            sandbox.age_keys(name, days=age)
        return made[name]

    (old,) = user("old-key", 1, age=120)
    iam_seed.use_key(sandbox, old, now - timedelta(days=1))
    for key in user("two-keys", 2):
        iam_seed.use_key(sandbox, key, now)
    user("pair", 2, path="/")  # no rule covers it
    user("idle", 1, age=60)  # never used: unused for 60 days
    user("fresh", 1)
    user(FORMULA, 1, path="/")
    user(HOSTILE, 1, path="/")
    iam_seed.console_user(sandbox, "console", days_old=10)
    iam_seed.sign_in(sandbox, "console", now)
    sandbox.iam.create_user(UserName="nokeys")
    cert, private = iam_seed.self_signed("www.example.com", not_after=now + timedelta(days=300))
    sandbox.iam.upload_server_certificate(
        ServerCertificateName="www", CertificateBody=cert, PrivateKey=private
    )
    cli.write_policy(max_age="90d")
    return made


def report(cli: Cli, *args: str) -> Result:
    result = cli("report", *args)
    assert result.code == 0, result.stdout + result.stderr
    return result


def schema() -> dict[str, Any]:
    text = resources.files("rotator").joinpath("schemas/report.schema.json").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def test_the_json_names_every_key_by_id_and_says_what_rotator_does_about_that_key(
    cli: Cli, keys: dict[str, list[str]]
) -> None:
    result = report(cli, "--output", "json")
    assert "access_key_" not in result.stdout
    data = result.json()
    jsonschema.validate(
        data, schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert (data["schema_version"], data["kind"], data["benchmark"]) == (1, "report", "cis-v7.0")
    rows = data["credentials"]
    shown: dict[str, set[str]] = {}
    for row in rows:
        if row["kind"] == "access-key":
            shown.setdefault(row["user"], set()).add(row["credential_id"])
    assert shown == {name: set(ids) for name, ids in keys.items()}
    assert {r["user"] for r in rows if r["kind"] == "login-profile"} == {"console"}
    assert "nokeys" not in {r["user"] for r in rows}
    by_key = {r["credential_id"]: r for r in rows}

    (old,) = keys["old-key"]
    assert by_key[old]["rotator_action"] == "rotate"
    assert old in by_key[old]["rotator_reason"] and "120d old" in by_key[old]["rotator_reason"]
    assert by_key[old]["age_days"] == 120
    assert (by_key[old]["cis_2.11"], by_key[old]["cis_2.12"]) == ("pass", "fail")
    assert by_key[old]["security_hub"] == {"IAM.8": "pass", "IAM.22": "pass", "IAM.3": "fail"}

    # Planned from the credential report (nothing due): the decision still names the key.
    (idle,) = keys["idle"]
    assert by_key[idle]["rotator_action"] == "skip"
    assert idle in by_key[idle]["rotator_reason"]
    assert (by_key[idle]["cis_2.11"], by_key[idle]["last_used"]) == ("fail", None)

    # Two active keys: the block names one; the other key's row does not claim it.
    first, second = keys["two-keys"]
    actions = {by_key[k]["rotator_action"] for k in (first, second)}
    assert actions == {"block", "none"}
    blocked = first if by_key[first]["rotator_action"] == "block" else second
    other = second if blocked == first else first
    assert blocked in by_key[other]["rotator_reason"], "names the key the plan acts on"
    for key in keys["pair"]:
        assert by_key[key]["rotator_action"] == "none"
        assert "no rule covers" in by_key[key]["rotator_reason"]

    assert data["failures"] == {"2.11": 1, "2.12": 1, "2.17": 1}
    (certificate,) = data["server_certificates"]
    assert (certificate["name"], certificate["cis_2.17"]) == ("www", "fail")
    assert certificate["expires"].endswith("Z")
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("version", list(NUMBERS))
def test_each_benchmark_version_numbers_the_controls_its_own_way(
    cli: Cli, keys: dict[str, list[str]], version: str
) -> None:
    """The same account under every CIS version: its control numbers, one active key
    counted per user (two users with two keys each: 2, not 4), and none in v7.0."""
    short = version.removesuffix(".0") if version.endswith(".0") else version
    data = report(cli, "--json", "--benchmark", short).json()
    assert data["benchmark"] == version
    expected = {n: f for n, f in zip(NUMBERS[version], FAILURES, strict=True) if n is not None}
    assert data["failures"] == expected
    unused, one_key, rotated, _ = NUMBERS[version]
    row = next(r for r in data["credentials"] if r["user"] == "pair")
    assert {k for k in row if k.startswith("cis_")} == {
        f"cis_{n}" for n in (unused, one_key, rotated) if n is not None
    }
    if one_key is not None:
        failing = [r["credential_id"] for r in data["credentials"] if r[f"cis_{one_key}"] == "fail"]
        assert sorted(failing) == sorted(keys["two-keys"] + keys["pair"])


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--benchmark", "cis-v9"),
            "error: --benchmark: unknown benchmark 'cis-v9'; one of: cis-v1.4, cis-v1.5, "
            "cis-v2.0, cis-v3.0, cis-v4.0, cis-v5.0, cis-v6.0, cis-v7.0",
        ),
        (
            ("--json", "--output", "csv"),
            "error: command line: --json and --output csv: give one of them",
        ),
    ],
)
def test_bad_options_are_refused_in_one_line_before_any_aws_call(
    cli: Cli, recorder: list[str], args: tuple[str, ...], line: str
) -> None:
    result = cli("report", *args)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [line]
    assert recorder == [], "no AWS call"


def test_csv_text_and_markdown_carry_the_same_rows_escaped(
    cli: Cli, keys: dict[str, list[str]]
) -> None:
    rows = list(csv.DictReader(io.StringIO(report(cli, "--output", "csv").stdout)))
    credentials = [r for r in rows if r["section"] == "credential"]
    assert len(credentials) == sum(len(v) for v in keys.values()) + 1  # and the password
    assert {r["credential_id"] for r in credentials} >= {k for v in keys.values() for k in v}
    (cert,) = [r for r in rows if r["section"] == "server-certificate"]
    assert cert["cis_2.17"] == "fail" and cert["IAM.26"] == "fail"
    assert cert["rotator_reason"].startswith("expired ") and cert["rotator_reason"].endswith(
        "d ago"
    )
    assert f"'{FORMULA}" in {r["user"] for r in rows}, "a formula is not run by a spreadsheet"
    header = next(csv.reader(io.StringIO(report(cli, "--output", "csv").stdout)))

    text = report(cli, "--output", "text").stdout.splitlines()
    assert len(text) == len(rows)
    assert all(len(line.split("\t")) == len(header) for line in text)
    (old,) = keys["old-key"]
    line = next(line.split("\t") for line in text if old in line)
    assert line[header.index("rotator_action")] == "rotate"

    markdown = report(cli, "--output", "markdown").stdout
    assert "| credential | old-key | access-key | " + old in markdown
    assert "x\\<b\\>y&z" in markdown and "<b>" not in markdown


class Dom(HTMLParser):
    """What a test needs of a page: rows (class, cells), SVG bars, external references."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self.bars: dict[str, int] = {}
        self.external: list[str] = []
        self.tags: Counter[str] = Counter()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags[tag] += 1
        for name in ("src", "href"):
            if found.get(name):
                self.external.append(str(found[name]))
        if tag == "tr":
            self.rows.append((found.get("class") or "", []))
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "rect" and found.get("data-control"):
            self.bars[str(found["data-control"])] = int(found["data-failures"] or 0)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium): the page is not rendered")
    return found


def test_the_html_page_renders_in_a_headless_browser_with_rows_and_chart(
    cli: Cli, keys: dict[str, list[str]], tmp_path: Path
) -> None:
    browser = chromium()
    page = tmp_path / "report.html"
    page.write_text(report(cli, "--output", "html").stdout)
    raw = Dom()
    raw.feed(page.read_text())
    assert raw.external == [], "self-contained: nothing to fetch"
    assert HOSTILE not in page.read_text(), "user text is escaped"

    dumped = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dumped.returncode == 0, dumped.stderr
    dom = Dom()
    dom.feed(dumped.stdout)
    cells = {cells[3]: cells for css, cells in dom.rows if css == "credential"}
    assert set(cells) >= {k for v in keys.values() for k in v}
    (old,) = keys["old-key"]
    assert cells[old][1] == "old-key"
    assert HOSTILE in {c[1] for c in cells.values()}, "the browser reads the escaped name back"
    assert dom.tags["svg"] == 1
    assert dom.bars == {
        "CIS 2.11": 1,
        "CIS 2.12": 1,
        "CIS 2.17": 1,
        "IAM.8": 1,
        "IAM.22": 1,
        "IAM.3": 1,
        "IAM.26": 1,
    }


def on_a_terminal(cli: Cli, *args: str, columns: int = 80) -> str:
    """stdout of ``rotator ARGS`` written to a pseudo-terminal ``columns`` wide (stderr: a
    pipe), as an operator at an 80-column shell sees it, without its style codes."""
    shown = cli.on_screen(*args, columns=columns, rows=50)
    assert shown.code == 0, shown.stderr
    return shown.stdout


def table_rows(text: str) -> Iterator[list[str]]:
    """The table's rows, each as its lines (a row starts where the user column is set)."""
    row: list[str] = []
    for line in text.splitlines():
        if not line.startswith("│"):
            continue
        if line.split("│")[1].strip() and row:
            yield row
            row = []
        row.append(line)
    if row:
        yield row


def test_the_table_fits_80_columns_with_ids_whole_and_rows_of_three_lines(
    cli: Cli, keys: dict[str, list[str]]
) -> None:
    shown = on_a_terminal(cli, "report", "--benchmark", "cis-v4.0")
    lines = shown.splitlines()
    assert max(len(line) for line in lines) <= 80, shown
    rows = list(table_rows(shown))
    assert len(rows) == sum(len(v) for v in keys.values()) + 1
    assert max(len(row) for row in rows) <= 3, shown
    for name, ids in keys.items():
        for key in ids:
            (row,) = [r for r in rows if key in r[0]]
            assert row[0].split("│")[1].strip() == name, "the user name is whole, on its row"
    assert "server certificate www: expired " in shown and "d ago, 1.19 fail" in shown
    assert "failures per CIS control (cis-v4.0): 1.12: 1, 1.13: 2, 1.14: 1, 1.19: 1" in shown

    wide = on_a_terminal(cli, "report", "--wide", columns=120)
    assert "rotate it with --emergency)" in " ".join(wide.replace("│", " ").split()), (
        "--wide: reasons whole"
    )


def test_the_report_calls_only_what_its_policy_allows_and_lists_only_users_with_keys(
    cli: Cli, keys: dict[str, list[str]], aws_env: str
) -> None:
    """Every call ``report`` makes is in ``REPORT_ACTIONS`` or the policy ``iam-policy``
    prints for the rules; key IDs are listed for the users the report shows keys for,
    and no one else."""
    granted = cli("iam-policy")
    assert granted.code == 0, granted.stderr
    allowed = set(REPORT_ACTIONS)
    for statement in granted.json()["Statement"]:
        actions = statement["Action"]
        allowed.update([actions] if isinstance(actions, str) else actions)
    with FaultProxy(aws_env) as proxy:
        cli.endpoint = proxy.url
        planned = cli("plan", "--json")
        assert planned.code == 0, planned.stderr
        plan_calls = Counter(proxy.actions_seen())
        before = len(proxy.actions_seen())
        report(cli, "--json")
        report_calls = Counter(proxy.actions_seen()[before:])
    made = {("sts:" if a == "GetCallerIdentity" else "iam:") + a for a in report_calls}
    assert made <= allowed, made - allowed
    assert "iam:ListServerCertificates" in made
    with_keys = len(keys)  # nokeys and console have none
    assert report_calls["ListAccessKeys"] - plan_calls["ListAccessKeys"] == with_keys


def documented_import() -> str:
    """docs/report.md's lines that import ``findings.json`` 100 findings at a time (its
    first ``sh`` block after "takes at most 100", without the ``rotator report`` line)."""
    text = (Path(__file__).parents[2] / "docs" / "report.md").read_text()
    after = text[text.index("takes at most 100") :]
    start = after.index("```sh\n") + 6
    block = after[start : after.index("\n```", start)]
    lines = block.splitlines()
    assert lines[0].startswith("rotator report ") and "--output asff" in lines[0]
    return "\n".join(lines[1:]) + "\n"


def test_asff_findings_import_into_security_hub_100_at_a_time(
    cli: Cli, keys: dict[str, list[str]], sandbox: MotoSandbox, tmp_path: Path
) -> None:
    """One finding per credential and control with a verdict (cis-v7.0: 2.11 and 2.12 per
    key, 2.11 for the password, 2.17 for the certificate), valid ASFF, imported with the
    AWS CLI as docs/report.md says: in batches of at most 100."""
    for tool in ("aws", "jq", "split"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool} on PATH: the documented import is not run")
    for n in range(41):
        sandbox.create_user(f"bulk-{n:02d}", path="/", keys=1)
    result = report(cli, "--output", "asff")
    findings = json.loads(result.stdout)
    for finding in findings:
        jsonschema.validate(finding, ASFF_SCHEMA)
    key_count = sum(len(v) for v in keys.values()) + 41
    assert len(findings) == 2 * key_count + 1 + 1  # and the password's, the certificate's
    assert len({f["Id"] for f in findings}) == len(findings)
    account = findings[0]["AwsAccountId"]
    assert {f["AwsAccountId"] for f in findings} == {account}
    assert {f["ProductArn"] for f in findings} == {
        f"arn:aws:securityhub:us-east-1:{account}:product/{account}/default"
    }
    (old,) = keys["old-key"]
    failed = {
        (f["Resources"][0]["Id"], f["GeneratorId"])
        for f in findings
        if f["Compliance"]["Status"] == "FAILED"
    }
    assert failed == {
        (old, "rotator/cis-v7.0/2.12"),
        (keys["idle"][0], "rotator/cis-v7.0/2.11"),
        ("www", "rotator/cis-v7.0/2.17"),
    }
    rotated = next(
        f for f in findings if f["Resources"][0]["Id"] == old and f["GeneratorId"].endswith("/2.12")
    )
    assert rotated["Id"] == f"rotator/{account}/old-key/{old}/cis-v7.0/2.12"
    assert rotated["Severity"] == {"Label": "MEDIUM"}
    assert rotated["ProductFields"]["rotator/action"] == "rotate"
    (password,) = [f for f in findings if f["Resources"][0]["Type"] == "AwsIamUser"]
    assert password["Resources"][0]["Id"] == f"arn:aws:iam::{account}:user/console"

    (tmp_path / "findings.json").write_text(result.stdout)
    imported = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", documented_import()],
        cwd=tmp_path,
        env=cli.environ(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == ["0", "0"], "two batches (100 and 2), none failed"
    assert sorted(p.name for p in tmp_path.glob("batch-*")) == ["batch-aa", "batch-ab"]
    hub = sandbox.client("securityhub")
    stored = [f for page in hub.get_paginator("get_findings").paginate() for f in page["Findings"]]
    assert {f["Id"] for f in stored} == {f["Id"] for f in findings}


def test_asff_findings_are_in_the_region_and_partition_rotator_acts_in(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    """No ``[aws] region``: the environment's region (AWS_DEFAULT_REGION) and its partition
    name the product and the resources."""
    gov = sandbox.client("iam", region="us-gov-west-1")
    gov.create_user(UserName="gov")
    gov.create_access_key(UserName="gov")
    cli.write_policy(max_age="90d")
    cli.env["AWS_DEFAULT_REGION"] = "us-gov-west-1"
    findings = json.loads(report(cli, "--output", "asff").stdout)
    assert len(findings) == 2, "the key: 2.11 and 2.12"
    for finding in findings:
        account = finding["AwsAccountId"]
        assert finding["ProductArn"].startswith(
            f"arn:aws-us-gov:securityhub:us-gov-west-1:{account}:"
        )
        (resource,) = finding["Resources"]
        assert (resource["Partition"], resource["Region"]) == ("aws-us-gov", "us-gov-west-1")
