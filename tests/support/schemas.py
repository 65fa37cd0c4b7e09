"""The JSON Schemas shipped in the package (``rotator/schemas/<kind>.schema.json``), read
as an installed program would (``importlib.resources``), and a check of a document
against one."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker


def names() -> list[str]:
    """Every schema the package ships (its ``kind``)."""
    folder = resources.files("rotator").joinpath("schemas")
    suffix = ".schema.json"
    return sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))


@cache
def schema(name: str) -> dict[str, Any]:
    text = resources.files("rotator").joinpath("schemas", f"{name}.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(loaded)
    return loaded


def validate(name: str, doc: Any) -> Any:
    """``doc`` if it is a valid ``name`` document (its ``kind`` included); else an
    AssertionError naming every place it is not."""
    validator = Draft202012Validator(schema(name), format_checker=FormatChecker())
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    problems = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors]
    assert not problems, f"not a valid {name} document:\n" + "\n".join(problems[:20])
    return doc
