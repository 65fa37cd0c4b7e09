"""The policy file's problems in its author's terms: pydantic's validation errors turned
into ``rule 'ci-keys': max_age: <what is wrong>``, naming the rule by its name and the
field by its key, without the discriminator tags pydantic puts in the path. A misspelt
key or value gets the nearest one that would do (``did you mean `max_age`?``)."""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel

from rotator.model import Kind


def problem(error: Any, raw: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """One validation error of the file whose parsed TOML is ``raw`` (validated as
    ``model``, which says what keys there are to suggest)."""
    where = _where(_loc(error), raw)
    return f"{where}: {message(error, model)}" if where else message(error, model)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``; did you mean `x`?`` for the candidate nearest ``word``, or "" if none is near."""
    found = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean `{found[0]}`?" if found else ""


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
    """``rules[0].max_age`` -> ``rule 'ci-keys': max_age``; "" for the file as a whole."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = raw.get("rules")
        entry = rules[loc[1]] if isinstance(rules, list) and loc[1] < len(rules) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        rule = f"rule {name!r}" if isinstance(name, str) and name else f"rules[{loc[1]}]"
        # Drop discriminator tags pydantic inserts (e.g. 'file' in sink.file.path).
        rest = [str(p) for p in loc[2:] if p not in _TAGS]
        return f"{rule}: {'.'.join(rest) or '(rule)'}"
    return ".".join(str(p) for p in loc)


def _loc(error: Any) -> tuple[int | str, ...]:
    """The error's location; an unknown rule kind is reported at the rule's ``kind``."""
    loc = tuple(error["loc"])
    if error["type"] == "union_tag_invalid" and "kind" in str(error.get("ctx", {})):
        return (*loc, "kind")
    return loc


def message(error: Any, model: type[BaseModel] | None = None) -> str:
    """What is wrong, in the policy file's terms."""
    kind = error["type"]
    if kind == "extra_forbidden":
        loc = tuple(error["loc"])
        known = keys_at(model, loc[:-1]) if model is not None and loc else []
        return "unknown key" + did_you_mean(str(loc[-1]), known) if loc else "unknown key"
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
        expected = str(ctx.get("expected_tags"))
        if field == "kind":
            expected = ", ".join(repr(str(k)) for k in Kind)
        hint = did_you_mean(str(ctx.get("tag")), _quoted(expected))
        return f"unknown {field} {ctx.get('tag')!r}; expected one of {expected}{hint}"
    if kind == "enum":
        ctx = error.get("ctx", {})
        hint = did_you_mean(str(error.get("input")), _quoted(str(ctx.get("expected"))))
        return f"unknown value {error.get('input')!r}; expected one of {ctx.get('expected')}{hint}"
    msg = str(error["msg"]).removeprefix("Value error, ")
    if kind == "literal_error":
        choices = _quoted(str(error.get("ctx", {}).get("expected", "")))
        return msg + did_you_mean(str(error.get("input")), choices)
    return msg


def _quoted(text: str) -> list[str]:
    """The quoted choices of pydantic's ``'a', 'b' or 'c'``."""
    return re.findall(r"'([^']*)'", text)


def keys_at(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The keys a table at ``loc`` (a pydantic error location, discriminator tags
    included) of a file validated as ``model`` may have; [] if it cannot be told."""
    where: Any = model
    for part in loc:
        where = _step(where, part)
        if where is None:
            return []
    return sorted({key for m in _members(where) if _is_model(m) for key in _keys(m)})


def _step(where: Any, part: int | str) -> Any:
    """The type one step down ``where``: a field, an item, or a union's tagged member."""
    members = _members(where)
    for member in members:
        if _is_model(member) and isinstance(part, str) and part in member.model_fields:
            return member.model_fields[part].annotation
        origin = get_origin(member)
        if origin in (list, tuple) and isinstance(part, int):
            return get_args(member)[0]
        if origin is dict and isinstance(part, str):
            return get_args(member)[1]
    tagged = [m for m in members if _is_model(m) and part in _literals(m)]
    return tagged[0] if len(tagged) == 1 else None


def _members(where: Any) -> list[Any]:
    """``where`` without Annotated, Optional and unions: the types it may be."""
    if get_origin(where) is Annotated:
        return _members(get_args(where)[0])
    if get_origin(where) in (Union, types.UnionType):
        return [m for arg in get_args(where) for m in _members(arg)]
    return [where]


def _is_model(member: Any) -> bool:
    return isinstance(member, type) and issubclass(member, BaseModel)


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _literals(model: type[BaseModel]) -> set[object]:
    """The values a model's ``Literal`` fields take (its discriminator tags)."""
    found: set[object] = set()
    for info in model.model_fields.values():
        for member in _members(info.annotation):
            if get_origin(member) is Literal:
                found.update(str(a) for a in get_args(member))
    return found
