"""The policy file's problems in its author's terms: pydantic's validation errors turned
into ``rule 'ci-keys': max_age: <what is wrong>``, naming the rule by its name and the
field by its key, without the discriminator tags pydantic puts in the path."""

from __future__ import annotations

from typing import Any

from rotator.model import Kind


def problem(error: Any, raw: dict[str, Any]) -> str:
    """One validation error of the file whose parsed TOML is ``raw``."""
    return f"{_where(_loc(error), raw)}: {message(error)}"


_TAGS = frozenset(
    {
        *(str(k) for k in Kind),
        "file",
        "secretsmanager",
        "memory",
        "ssm",
        "self-signed",
        "local-ca",
        "directory",
    }
)


def _where(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    """``rules[0].max_age`` -> ``rule 'ci-keys': max_age``."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules")
        entry = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rule = f"rule {name!r}" if isinstance(name, str) and name else f"rules[{loc[1]}]"
        # Drop discriminator tags pydantic inserts (e.g. 'file' in sink.file.path).
        rest = [str(p) for p in loc[2:] if p not in _TAGS]
        return f"{rule}: {'.'.join(rest) or '(rule)'}"
    return ".".join(str(p) for p in loc) or "(file)"


def _loc(error: Any) -> tuple[int | str, ...]:
    """The error's location; an unknown rule kind is reported at the rule's ``kind``."""
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid" and "kind" in str(error.get("ctx", {})):
        return (*loc, "kind")
    return loc


def message(error: Any) -> str:
    """What is wrong, in the policy file's terms."""
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "union_tag_not_found":
        field = str(error.get("ctx", {}).get("discriminator", "'type'")).strip("'")
        return f"missing key {field!r}"
    if kind in ("model_attributes_type", "model_type", "dict_type"):
        return (
            f"must be a table, not {type(error.get('input')).__name__} {error.get('input')!r:.40}"
        )
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        field = str(ctx.get("discriminator", "'type'")).strip("'")
        expected = ctx.get("expected_tags")
        if field == "kind":
            expected = ", ".join(repr(str(k)) for k in Kind)
        return f"unknown {field} {ctx.get('tag')!r}; expected one of {expected}"
    if kind == "enum":
        ctx = error.get("ctx", {})
        return f"unknown value {error.get('input')!r}; expected one of {ctx.get('expected')}"
    msg = str(error["msg"])
    return msg.removeprefix("Value error, ")
