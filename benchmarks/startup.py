"""Start-up: how long ``rotator --help`` takes, and how long the Lambda handler's cold
import takes, each against a bare ``python -c pass`` measured in the same run (the
interpreter's own start-up, which no change of ours can remove). Medians of N runs in
fresh processes. Targets: ``--help`` <= 0.3 s, Lambda import <= 0.5 s. Not part of the
test run.

    .venv/bin/python -m benchmarks.startup [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def median_s(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    bare = median_s([sys.executable, "-c", "pass"], args.runs)
    cases = {
        "rotator --help": ([str(BIN / "rotator"), "--help"], 0.3),
        "rotator --version": ([str(BIN / "rotator"), "--version"], 0.3),
        "import lambda_handler": (
            [sys.executable, "-c", "import rotator.entrypoints.lambda_handler"],
            0.5,
        ),
    }
    print(f"python -c pass: {bare:.3f}s (baseline)")
    for name, (argv, target) in cases.items():
        try:
            took = median_s(argv, args.runs)
        except subprocess.CalledProcessError:
            print(f"{name}: failed")
            continue
        verdict = "ok" if took <= target else "over"
        print(
            f"{name}: {took:.3f}s = {took / bare:.1f}x bare python, "
            f"{took - bare:.3f}s of our own (target <= {target}s: {verdict})"
        )


if __name__ == "__main__":
    main()
