"""Memory of ``--output json`` / ``--output text`` at 1k and 10k rows, in process: the
extra memory (tracemalloc peak above the inputs already held) of writing the ``plan``,
``sweep``, ``status`` and ``history`` documents (``rotator.documents``, streamed
by ``render.print_json``) and their text rows. The baseline, measured in the same run, is
the same document made whole and written with one ``json.dumps`` (what streaming avoids).
Target: the streamed extra memory stays flat (10k rows within 2x of 1k rows) and is a small
fraction of the baseline's. Not part of the test run.

    .venv/bin/python -m benchmarks.output_memory [--rows 1000 10000]
"""

from __future__ import annotations

import argparse
import io
import json
import tracemalloc
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from rich.console import Console

from rotator import documents
from rotator.entrypoints import render
from rotator.model import (
    Action,
    Decision,
    Kind,
    Outcome,
    Plan,
    Rotation,
    RotationState,
    Step,
    StepRecord,
    utcnow,
)
from rotator.rotation.report import Report, Result, SweepResult


def inputs(rows: int) -> dict[str, Any]:
    now = utcnow()
    decisions = tuple(
        Decision(
            account="123456789012",
            user=f"user-{n:05d}",
            kind=Kind.ACCESS_KEY,
            rule="ci-keys",
            action=Action.ROTATE,
            reason=f"access key AKIA{n:016d} is 95d old (max_age 90d)",
            credential_id=f"AKIA{n:016d}",
            due_at=now,
        )
        for n in range(rows)
    )
    rotations = [
        Rotation(
            rotation_id=f"rot-{n:012d}",
            account="123456789012",
            user=f"user-{n:05d}",
            kind=Kind.ACCESS_KEY,
            rule="ci-keys",
            state=RotationState.PROMOTED,
            old_credential_id=f"AKIA{n:016d}",
            new_credential_id=f"AKIB{n:016d}",
            deactivate_after=timedelta(days=1),
            created_at=now,
            updated_at=now,
            promoted_at=now,
        )
        for n in range(rows)
    ]
    steps = [
        StepRecord(rotation_id=r.rotation_id, at=now, step=s, outcome=Outcome.DONE)
        for r in rotations[:1]
        for s in (Step.CREATE, Step.VERIFY, Step.PROMOTE)
    ]
    sweep = SweepResult(
        run_id="run-1",
        account="123456789012",
        dry_run=True,
        started_at=now,
        finished_at=now,
        plan=Plan(decisions=decisions),
        reports=tuple(
            Report(decision=d, result=Result.WOULD_ROTATE, reason="would rotate") for d in decisions
        ),
    )
    return {
        "plan": Plan(decisions=decisions),
        "rotations": rotations,
        "steps": steps,
        "sweep": sweep,
    }


def cases(given: dict[str, Any]) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """name: (the JSON document, its text rows)."""
    now = utcnow()
    history = [(r, given["steps"]) for r in given["rotations"]]
    return {
        "plan": (
            lambda: documents.plan_document(given["plan"]),
            lambda: documents.plan_text(given["plan"]),
        ),
        "sweep": (
            lambda: documents.sweep_document(given["sweep"]),
            lambda: documents.sweep_text(given["sweep"]),
        ),
        "status": (
            lambda: documents.status_document(given["rotations"], now, ()),
            lambda: documents.status_text(given["rotations"], now, ()),
        ),
        "history": (
            lambda: documents.history_document(history, ()),
            lambda: documents.history_text(history, ()),
        ),
    }


def peak(work: Callable[[], None]) -> int:
    """Bytes allocated at the peak of ``work`` above what was held before it."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    work()
    top = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return top - before


class Sink(io.TextIOBase):
    """A file that keeps nothing (as a pipe to ``jq`` would, from our side)."""

    def write(self, text: str) -> int:
        return len(text)


def whole(doc: dict[str, Any]) -> str:
    """The baseline: the document made whole (its iterators read into lists), one string."""
    made = {
        k: list(v) if not isinstance(v, (dict, list, str, int, bool, type(None))) else v
        for k, v in doc.items()
    }
    return json.dumps(made, indent=2, default=str)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    console = Console(file=Sink(), force_terminal=False)
    results: dict[str, dict[int, tuple[int, int, int]]] = {}
    for rows in args.rows:
        given = inputs(rows)
        for name, (doc, text) in cases(given).items():
            streamed = peak(lambda doc=doc: render.print_json(console, doc()))
            rowed = peak(lambda text=text: documents.print_text(console, text()))
            baseline = peak(lambda doc=doc: Sink().write(whole(doc())))
            results.setdefault(name, {})[rows] = (streamed, rowed, baseline)
    head = ("document", "rows", "json KB", "text KB", "whole KB", "json/whole")
    print(f"{head[0]:<9} {head[1]:>6} {head[2]:>9} {head[3]:>9} {head[4]:>9} {head[5]:>10}")
    for name, by_rows in results.items():
        for rows, (streamed, rowed, baseline) in by_rows.items():
            print(
                f"{name:<9} {rows:>6} {streamed / 1024:>9.0f} {rowed / 1024:>9.0f} "
                f"{baseline / 1024:>9.0f} {streamed / baseline:>10.3f}"
            )
        small, large = min(by_rows), max(by_rows)
        growth = by_rows[large][0] / max(by_rows[small][0], 1)
        print(f"{name:<9} json extra memory {large} rows / {small} rows: {growth:.2f}x")


if __name__ == "__main__":
    main()
