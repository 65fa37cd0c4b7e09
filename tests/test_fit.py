"""``rotator.entrypoints.fit``: tables laid out for the width they get. Rendered by rich at
a given width, as a terminal, a pipe or cron mail would show them."""

from __future__ import annotations

import io

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.text import Text

from rotator.entrypoints.fit import Fitted, Group, one_line

KEY = "AKIARZPUZDIKOTC4SIQR"
COLUMNS = ("user", "kind", "credential", "action", "reason")
NARROW = (Group(("user", "credential")), Group(("kind", "action")), Group(("reason",)))
REASON = "2 active access keys: rotator cannot tell which one is in use; deactivate one"


def render(table: Fitted, width: int = 80) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in out.splitlines()]


def table(user: str, *, wide: bool = False) -> Fitted:
    fitted = Fitted(
        "Plan", COLUMNS, free={"reason"}, layouts=(one_line(COLUMNS), NARROW), wide=wide
    )
    fitted.add_row(escape(user), "access-key", KEY, "[bold red]block[/]", Text(REASON))
    return fitted


def body(lines: list[str]) -> list[str]:
    rule = next(n for n, line in enumerate(lines) if "╇" in line)
    return [line for line in lines[rule + 1 :] if "│" in line]


def test_a_row_that_fits_is_one_line_with_the_reason_cut() -> None:
    lines = render(table("ci-app"))
    assert max(cell_len(line) for line in lines) <= 80
    (row,) = body(lines)
    assert "ci-app" in row and KEY in row and "block" in row
    assert row.rstrip(" │").endswith("…")


def test_a_long_user_stacks_cells_and_keeps_ids_and_names_whole() -> None:
    user = "svc-jenkins-production-deployer-eu-west-1-[a]pp"  # 47 characters, markup-like
    lines = render(table(user))
    assert max(cell_len(line) for line in lines) <= 80
    rows = body(lines)
    assert len(rows) == 2, "the user over its key, the kind over the action"
    assert user in rows[0] and KEY in rows[1]
    assert "access-key" in rows[0] and "block" in rows[1]


def test_wide_wraps_the_reason_whole() -> None:
    lines = render(table("ci-app", wide=True))
    rows = body(lines)
    assert len(rows) > 1
    last = " ".join(line.split("│")[-2].strip() for line in rows)
    assert REASON in " ".join(last.split())


def test_a_name_too_long_for_any_layout_gives_way_before_the_ids() -> None:
    user = "x" * 75
    lines = render(table(user))
    assert max(cell_len(line) for line in lines) <= 80
    assert any(KEY in line for line in lines), "the key ID stays whole"
    assert not any(user in line for line in lines)


def test_an_inline_group_joins_its_cells_on_one_line() -> None:
    columns = ("rotation", "old", "→ new")
    fitted = Fitted("t", columns, layouts=((Group(("rotation",)), Group(("old", "→ new"), " ")),))
    fitted.add_row("rot-1", "AKIAOLD", "→ AKIANEW")
    (row,) = body(render(fitted))
    assert "AKIAOLD → AKIANEW" in row
    assert "old → new" in "\n".join(render(fitted))
