"""Tables that fit the width they are printed at (80 columns: a terminal, a pipe, cron mail).

A ``Fitted`` table is laid out when it is rendered, for the width it gets. Its cells are
*fixed* (IDs, users, kinds, states, dates: never wrapped, never cut) or *free* (reasons,
steps: cut to one line ending in "…", or with ``wide`` wrapped whole). It tries its
``layouts`` in order and takes the first whose fixed columns fit whole beside at least
``FREE_MIN`` columns for each free one: the first layout is one line per row; the next
ones stack related cells in one column (a rotation's ID above its user, the new key under
the old), so a row takes at most as many lines as a group has cells. Widths are computed
here and given to rich exactly, so rich never squeezes a fixed column.

Cells are plain text (``Text``) or rich markup written by rotator (``str``): user-supplied
text is escaped by the caller (``rich.markup.escape``) or passed as ``Text``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.console import Group as RichGroup
from rich.table import Table
from rich.text import Text

Cell = str | Text
FREE_MIN = 12  # the least a free column is given before a layout counts as not fitting


@dataclass(frozen=True)
class Group:
    """Columns shown as one: their cells stacked (``sep`` "\\n", empty ones left out) or
    joined on one line (e.g. " → ")."""

    columns: tuple[str, ...]
    sep: str = "\n"
    title: str | None = None  # the header, if not the columns' names

    @property
    def header(self) -> str:
        """The column's header: the names stacked like the cells, or joined by ``sep``."""
        return self.sep.join(self.columns) if self.title is None else self.title


def one_line(columns: Iterable[str]) -> tuple[Group, ...]:
    """The layout with every column on its own."""
    return tuple(Group((c,)) for c in columns)


class Fitted:
    """A table of named columns, laid out for the width it is rendered at."""

    def __init__(
        self,
        title: str,
        columns: Sequence[str],
        *,
        free: Iterable[str] = (),
        layouts: Sequence[Sequence[Group]] = (),
        wide: bool = False,
    ) -> None:
        self.title = title
        self.columns = tuple(columns)
        self.free = frozenset(free)
        self.layouts = [tuple(layout) for layout in layouts] or [one_line(self.columns)]
        self.wide = wide
        self.caption: str | None = None
        self.rows: list[dict[str, Text]] = []

    def add_row(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        row: dict[str, Text] = {}
        for column, cell in zip(self.columns, cells, strict=True):
            text = cell if isinstance(cell, Text) else Text.from_markup(cell)
            # A free cell is cut to one line with "…", or wrapped whole; a fixed one is
            # never wrapped (its column is always made wide enough).
            wraps = column in self.free and self.wide
            row[column] = Text(
                text.plain,
                style=text.style,
                no_wrap=not wraps,
                overflow="fold" if wraps else "ellipsis",
                spans=list(text.spans),
            )
        self.rows.append(row)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        fitting = [
            self._widths(layout, width, edge=n == 0) for n, layout in enumerate(self.layouts)
        ]
        chosen = next((n for n, w in enumerate(fitting) if w is not None), len(self.layouts) - 1)
        layout = self.layouts[chosen]
        widths = fitting[chosen] or self._widths(layout, width, edge=chosen == 0, force=True)
        yield self._table(layout, widths or [], edge=chosen == 0)

    # -- layout ---------------------------------------------------------------------------

    def _parts(self, row: dict[str, Text], group: Group) -> list[tuple[str, Text]]:
        return [(c, row[c]) for c in group.columns if row[c].plain]

    def _cell(self, row: dict[str, Text], group: Group) -> RenderableType:
        parts = [text for _, text in self._parts(row, group)]
        if group.sep == "\n":  # one renderable a line: each keeps its own overflow
            return RichGroup(*parts) if parts else Text("")
        return Text(group.sep).join(parts)

    def _measure(self, group: Group) -> tuple[int, int]:
        """The widest line of the group's header and fixed cells, and of everything."""
        fixed = [cell_len(line) for line in group.header.split("\n")]
        every = list(fixed)
        for row in self.rows:
            parts = self._parts(row, group)
            if group.sep != "\n":
                parts = [("", Text(group.sep).join([t for _, t in parts]))]
            for column, text in parts:
                widths = [cell_len(line) for line in text.plain.split("\n")]
                every += widths
                if column not in self.free:
                    fixed += widths
        return max(fixed), max(every)

    def _widths(
        self, layout: Sequence[Group], width: int, *, edge: bool, force: bool = False
    ) -> list[int] | None:
        """Each group's width (padding excluded) if ``layout`` fits in ``width`` with every
        fixed cell whole and each group with a free column at least ``FREE_MIN`` wide (or
        as wide as its text, if less); None if it does not. ``edge``: with a border and
        padding at each edge (the one-line layout) or without (a stacked one, to save room).
        ``force``: the groups with a free column share what is left even if it does not
        fit."""
        # A border and two spaces of padding between columns, and (``edge``) at each side.
        chrome = 3 * len(layout) + 1 if edge else 3 * (len(layout) - 1)
        measured = [self._measure(g) for g in layout]
        free = [n for n, g in enumerate(layout) if any(c in self.free for c in g.columns)]
        left = width - chrome - sum(m[1] for n, m in enumerate(measured) if n not in free)
        least = {n: max(measured[n][0], min(measured[n][1], FREE_MIN)) for n in free}
        if left < sum(least.values()) and not force:
            return None
        widths = [m[1] for m in measured]
        for i, n in enumerate(free):  # share what is left
            share = left // (len(free) - i)
            widths[n] = max(least[n], min(measured[n][1], share), 1)
            left -= widths[n]
        # Forced and still too wide: the widest columns give way (a very long user name),
        # rather than every column at once (IDs would be cut).
        while sum(widths) + chrome > width and max(widths) > 1:
            widths[widths.index(max(widths))] -= 1
        return widths

    def _table(self, layout: Sequence[Group], widths: Sequence[int], *, edge: bool) -> Table:
        table = Table(
            title=self.title,
            title_justify="left",
            caption=self.caption,
            show_edge=edge,
            pad_edge=edge,
        )
        table.caption_justify = "left"
        for group, width in zip(layout, widths, strict=True):
            table.add_column(group.header, width=width, no_wrap=True)
        for row in self.rows:
            table.add_row(*(self._cell(row, group) for group in layout))
        return table
