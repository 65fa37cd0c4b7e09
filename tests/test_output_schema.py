"""``--output json`` of every command, through the real CLI (a subprocess) against the moto
server, checked against the JSON Schema the package ships for its ``kind``; ``--output
text`` read as a script would; ``--json`` and ``--output`` together.

The organization sweep (``org-sweep``) and the plan over many accounts need an
Organizations sandbox: tests/e2e/test_org.py runs them, and ``Result.json`` checks every
document it reads against its schema (so do all the end-to-end tests).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from rotator.documents import KINDS
from tests.support import schemas
from tests.support.cli import Cli
from tests.support.moto import MotoSandbox

pytestmark = pytest.mark.e2e

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


@pytest.fixture
def cli(aws_env: str, tmp_path: Path) -> Cli:
    cli = Cli(tmp=tmp_path, endpoint=aws_env)
    cli.write_policy(deactivate_after="1h")
    return cli


def test_every_kind_has_a_closed_schema_in_the_package() -> None:
    assert schemas.names() == sorted(KINDS)
    for kind in KINDS:
        schema = schemas.schema(kind)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["additionalProperties"] is False
        assert schema["properties"]["kind"] == {"const": kind}
        assert schema["properties"]["schema_version"] == {"const": 1}
        assert {"schema_version", "kind"} <= set(schema["required"])
    with pytest.raises(AssertionError, match="schema_version"):
        schemas.validate("status", {"kind": "status", "items": [], "corrupt": []})
    doc = {"schema_version": 1, "kind": "status", "items": [], "corrupt": [], "extra": 1}
    with pytest.raises(AssertionError, match="unexpected"):
        schemas.validate("status", doc)


def _timestamps(value: Any, key: str = "") -> list[str]:
    """Every value of a field named ``*_at``, ``at`` or ``held_since`` in ``value``."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _timestamps(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _timestamps(v, key)]
    timed = key == "at" or key.endswith("_at") or key == "held_since"
    return [value] if timed and isinstance(value, str) else []


def test_every_command_prints_a_document_its_schema_accepts(cli: Cli, sandbox: MotoSandbox) -> None:
    (kept,) = sandbox.create_user("ci-kept", path="/ci/", keys=1)
    (leaked,) = sandbox.create_user("ci-leaked", path="/ci/", keys=1)
    (work,) = sandbox.create_user("dev-laptop", keys=1)
    creds = cli.tmp / "credentials"
    creds.write_text(
        f"[work]\naws_access_key_id = {work['AccessKeyId']}\n"
        f"aws_secret_access_key = {work['SecretAccessKey']}\n"
    )
    seen: dict[str, dict[str, Any]] = {}

    def document(*args: str, config: bool = True, code: int = 0) -> dict[str, Any]:
        result = cli(*args, "--output", "json", config=config)
        assert result.code == code, result.stdout + result.stderr
        doc: dict[str, Any] = json.loads(result.stdout)
        schemas.validate(doc["kind"], doc)
        seen[" ".join(args[:1] + tuple(a for a in args[1:] if a.startswith("--")))] = doc
        return doc

    assert document("validate")["rules"][0]["name"] == "ci-keys"
    planned = document("plan")
    assert {d["user"] for d in planned["items"]} == {"ci-kept", "ci-leaked"}
    dry = document("run", "--dry-run")
    assert dry["counts"]["would_rotate"] == 2 and dry["counts"]["rotated"] == 0
    preview = document("rotate", "--user", "ci-kept", "--dry-run")
    assert preview["result"]["outcome"] == "would-rotate"
    emergency = document(
        "rotate", "--access-key-id", leaked["AccessKeyId"], "--emergency", "--yes"
    )["result"]
    assert emergency["credential_id"] == leaked["AccessKeyId"]
    assert emergency["new_credential_id"] not in (None, leaked["AccessKeyId"])
    assert emergency["steps"][0]["credential_id"] == leaked["AccessKeyId"]
    swept = document("run")
    (rotated,) = [r for r in swept["results"] if r["user"] == "ci-kept"]
    assert (rotated["outcome"], rotated["credential_id"]) == ("rotated", kept["AccessKeyId"])
    in_flight = {i["user"]: i for i in document("status")["items"]}["ci-kept"]
    assert (in_flight["credential_id"], in_flight["next_step"]) == (
        kept["AccessKeyId"],
        "deactivate",
    )
    history = document("history")["items"]
    assert {h["user"] for h in history} == {"ci-kept", "ci-leaked"}
    back = document("rollback", in_flight["rotation_id"], "--yes")
    assert (back["rotation"]["state"], back["step"]["step"]) == ("rolled-back", "rollback")
    assert back["step"]["credential_id"] == kept["AccessKeyId"]
    cli.env.update(AWS_SHARED_CREDENTIALS_FILE=str(creds), XDG_STATE_HOME=str(cli.tmp / "state"))
    profile = document("rotate-profile", "work", "--yes", config=False)
    assert (profile["profile"], profile["result"]["state"]) == ("work", "completed")

    reported = document("report")
    assert {"ci-kept", "ci-leaked", "dev-laptop"} <= {c["user"] for c in reported["credentials"]}

    kinds = {doc["kind"] for doc in seen.values()}
    organization = {"org-sweep", "org-report"}
    assert kinds == set(KINDS) - organization, "org-sweep, org-report: tests/e2e/test_org.py"
    for doc in seen.values():
        stamps = _timestamps(doc)
        assert all(ISO_Z.match(t) for t in stamps), stamps
    assert _timestamps(history), "history has timestamps to check"


def test_text_is_one_tab_separated_row_per_line_with_the_json_fields(
    cli: Cli, sandbox: MotoSandbox
) -> None:
    for user in ("ci-a", "ci-b"):
        sandbox.create_user(user, path="/ci/", keys=1)
    assert cli("run").code == 0
    for command, columns in (("status", 10), ("history", 10), ("plan", 8)):
        text = cli(command, "--output", "text")
        assert text.code == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines, command
        assert "\x1b" not in text.stdout, "no colour"
        rows = [line.split("\t") for line in lines]
        assert {len(row) for row in rows} == {columns}, rows
        assert all(cell for row in rows for cell in row), "an empty field is written '-'"
        items = cli(command, "--json").items()
        assert len(rows) == len(items)
        if command != "plan":
            assert [row[0] for row in rows] == [i["rotation_id"] for i in items]
            assert [(row[5], row[6]) for row in rows] == [
                (i["credential_id"], i["new_credential_id"]) for i in items
            ]
    (row,) = [r for r in cli("plan", "-o", "text").stdout.splitlines() if "\tci-a\t" in r]
    assert row.split("\t")[3] == "-", "no slot"


def test_json_and_a_different_output_are_refused(cli: Cli, sandbox: MotoSandbox) -> None:
    sandbox.create_user("ci-a", path="/ci/", keys=1)
    for args in (("plan", "--json", "-o", "text"), ("run", "--json", "--output", "table")):
        refused = cli(*args)
        assert refused.code == 2, refused.stderr
        assert refused.stderr.splitlines() == [
            f"error: command line: --json and --output {args[-1]} disagree: give one of them"
        ]
        assert refused.stdout == ""
    assert cli.journal_bytes() == b"", "nothing ran"
    agreed = cli("plan", "--json", "-o", "json")
    assert agreed.code == 0 and agreed.json()["kind"] == "plan"
    unknown = cli("plan", "--output", "yaml")
    assert unknown.code == 2 and "Traceback" not in unknown.stderr
    assert "yaml" in unknown.stderr
