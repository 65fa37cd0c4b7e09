"""The Lambda package, lean: rotator and the dependencies its handler imports, without the
CLI-only ones (typer, rich and theirs), with botocore's data pruned to the services rotator
calls, and compiled to bytecode (Lambda's /var/task is read-only: without .pyc every cold
start compiles every module again). Prints the zipped size and the cold import time of
``rotator.entrypoints.lambda_handler`` from the unzipped package, against a bare
``python -S -c pass`` and against the full environment, measured in the same run.
Targets: <= 20 MB zipped, cold import <= 0.5 s. Not part of the test run.

    .venv/bin/python -m benchmarks.lambda_package [--out build/lambda] [--runs 7]

The files are copied from this environment (its platform and Python), so the figures are
for this machine; ``docs/deploy.md`` builds the same selection for Lambda's platform.
"""

from __future__ import annotations

import argparse
import compileall
import os
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from rotator.aws import SERVICES

ROOT = Path(__file__).resolve().parents[1]
# Only the command line needs these (and what they bring): never in the Lambda path.
CLI_ONLY = frozenset({"typer", "rich"})
# The AWS services rotator calls: rotator.aws.SERVICES; botocore keeps its own tables.


def closure(root: str, skip: frozenset[str]) -> list[metadata.Distribution]:
    """``root``'s distribution and every one it requires (with the extras a requirement
    names, as pip installs them), less ``skip``."""
    seen: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(root, "")]
    while todo:
        name, extra = todo.pop()
        key = name.lower().replace("_", "-")
        if key in skip or (key, extra) in done:
            continue
        done.add((key, extra))
        dist = seen.setdefault(key, metadata.distribution(name))
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": extra}):
                if req.marker is not None and "extra" in str(req.marker) and not extra:
                    continue  # only with an extra nobody asked for
                todo.extend((req.name, e) for e in ("", *req.extras))
    return list(seen.values())


def pruned(relative: Path) -> bool:
    """True for files the Lambda never reads: botocore/boto3 data of other services and
    examples, caches, metadata, scripts."""
    parts = relative.parts
    if "__pycache__" in parts or relative.suffix in (".pyc", ".pyi"):
        return True
    if parts[0].endswith((".dist-info", ".egg-info")) or parts[0] == "..":
        return True
    if parts[:2] in (("botocore", "data"), ("boto3", "data")) and len(parts) > 3:
        return parts[2] not in SERVICES or parts[-1].startswith("examples-")
    return False


def build(out: Path) -> list[str]:
    """The package in ``out`` (replaced), compiled; returns the distributions in it."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = []
    for dist in closure("iam-rotator", CLI_ONLY):
        name = dist.metadata["Name"]
        names.append(name)
        if name == "iam-rotator":
            shutil.copytree(
                ROOT / "rotator", out / "rotator", ignore=shutil.ignore_patterns("__pycache__")
            )
            continue
        for file in dist.files or []:
            relative = Path(str(file))
            source = Path(str(dist.locate_file(file)))
            if pruned(relative) or not source.is_file():
                continue
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, out / relative)
    compileall.compile_dir(
        out,
        quiet=1,
        legacy=False,
        invalidation_mode=compileall.py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
    return sorted(names)


def zipped(out: Path) -> int:
    target = out.with_suffix(".zip")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(out.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(out))
    return target.stat().st_size


def median_s(argv: list[str], runs: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "lambda")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average: {load} (a 2-core machine shared with other jobs)")
    names = build(args.out)
    print(f"distributions: {', '.join(names)}")
    size = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    packed = zipped(args.out)
    verdict = "ok" if packed <= 20 * 2**20 else "over"
    print(
        f"package: {size / 2**20:.1f} MB unzipped, {packed / 2**20:.1f} MB zipped "
        f"(target <= 20 MB: {verdict})"
    )
    handler = "import rotator.entrypoints.lambda_handler"
    lean = f"import sys; sys.path.insert(0, {str(args.out)!r}); {handler}"
    # -S: no site-packages (as Lambda's runtime, which has only the package on its path).
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    bare = median_s([sys.executable, "-S", "-c", "pass"], args.runs, env)
    check = [sys.executable, "-S", "-c", f"{lean}; assert 'rich' not in sys.modules"]
    subprocess.run(check, check=True, env=env)
    cold = median_s([sys.executable, "-S", "-c", lean], args.runs, env)
    full = median_s([sys.executable, "-c", handler], args.runs)
    verdict = "ok" if cold <= 0.5 else "over"
    print(f"python -S -c pass: {bare:.3f}s (baseline)")
    print(
        f"cold import from the lean package: {cold:.3f}s = {cold / bare:.1f}x bare python, "
        f"{cold - bare:.3f}s of our own (target <= 0.5 s: {verdict})"
    )
    print(f"the same import in the full environment (CLI packages installed): {full:.3f}s")


if __name__ == "__main__":
    main()
