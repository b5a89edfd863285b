"""Products per CPU second of the client, this checkout against an earlier one, in alternated pairs.

    python -m benchmarks cpu-ab --before /path/to/checkout [--pairs 7] [--products 100000]

The "before" checkout needs its own `.venv` (`pip install --require-hashes -r
requirements/test.lock`, then `pip install --no-deps -e .`) and runs with its own harness, so
each side is measured as it was built: `python -m benchmarks run --profiles nolimit --sizes N
--sweep '' --no-stages`, one run each (a harness without `--repeats` runs once). The sides
alternate (before, after, before, ...) so that drift of the machine's speed hits both alike; the
figure is the client's CPU seconds for the full sync (every thread, `getrusage`), not wall time.
Writes `results/cpu-ab-nolimit-<size>.json` with every run, the pair ratios and both summaries
(median of the pair ratios; ratio of each side's median), and the load before each run.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.environment import load, machine
from benchmarks.plan import size_label
from benchmarks.processes import ROOT, HarnessError
from benchmarks.runner import Say


def _side(tree: Path, size: int, repeats: bool, scratch: Path) -> dict[str, Any]:
    """One full sync by the harness of `tree`: the syncd full run's figures."""
    python = tree / ".venv" / "bin" / "python"
    if not python.exists():
        raise HarnessError(f"{tree}: no .venv/bin/python (give that checkout its own venv)")
    results = Path(tempfile.mkdtemp(dir=scratch))
    argv = [str(python), "-m", "benchmarks", "run", "--profiles", "nolimit"]
    argv += ["--sizes", str(size), "--sweep", "", "--no-stages", "--results", str(results)]
    if repeats:
        argv += ["--repeats", "1"]
    load_before = load()
    done = subprocess.run(argv, cwd=tree, capture_output=True, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        raise HarnessError(f"{tree}: benchmark failed: {done.stderr.strip()[-400:]}")
    record = json.loads((results / f"nolimit-{size_label(size)}.json").read_text())
    shutil.rmtree(results, ignore_errors=True)
    runs = [r for r in record["runs"] if r["tool"] == "syncd" and r["kind"] == "full"]
    if len(runs) != 1:
        raise HarnessError(f"{tree}: expected one syncd full run, the record holds {len(runs)}")
    run = runs[0]
    if run.get("stored", run["products"]) != size:
        raise HarnessError(f"{tree}: the full sync did not store {size} products")
    cpu = float(run["cpu_s"])
    return {
        "cpu_s": cpu,
        "main_thread_cpu_s": run.get("main_thread_cpu_s"),
        "other_threads_cpu_s": run.get("other_threads_cpu_s"),
        "wall_s": run["wall_s"],
        "products_per_cpu_s": round(size / cpu, 1),
        "load_before": load_before,
    }


def compare(before: Path, pairs: int, size: int, results: Path, command: str, say: Say) -> Path:
    """Alternate `pairs` runs of each side; write and return the JSON record."""
    name = f"cpu-ab-nolimit-{size_label(size)}"
    record: dict[str, Any] = {
        "case": name,
        "kind": "cpu-ab",
        "products": size,
        "command": command,
        "machine": machine(ROOT),
        "before": {"tree": str(before), "commit": _commit(before)},
        "after": {"tree": str(ROOT), "commit": _commit(ROOT)},
        "pairs": [],
    }
    scratch = Path(tempfile.mkdtemp(prefix="cpu-ab-"))
    repeats = _knows_repeats(before)
    try:
        for n in range(pairs):
            first = _side(before, size, repeats, scratch)
            second = _side(ROOT, size, True, scratch)
            ratio = round(second["products_per_cpu_s"] / first["products_per_cpu_s"], 3)
            record["pairs"].append({"before": first, "after": second, "ratio": ratio})
            say(
                f"  pair {n + 1}: {first['cpu_s']:.2f} -> {second['cpu_s']:.2f} CPU s "
                f"({first['products_per_cpu_s']:,.0f} -> {second['products_per_cpu_s']:,.0f} "
                f"products per CPU s): {ratio:.2f}x"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    ratios = [p["ratio"] for p in record["pairs"]]
    before_rates = [p["before"]["products_per_cpu_s"] for p in record["pairs"]]
    after_rates = [p["after"]["products_per_cpu_s"] for p in record["pairs"]]
    record["median_pair_ratio"] = statistics.median(ratios)
    record["median_before"] = statistics.median(before_rates)
    record["median_after"] = statistics.median(after_rates)
    record["ratio_of_medians"] = round(record["median_after"] / record["median_before"], 3)
    say(
        f"  median of the pairs {record['median_pair_ratio']:.2f}x; medians of each side "
        f"{record['median_before']:,.0f} -> {record['median_after']:,.0f}: "
        f"{record['ratio_of_medians']:.2f}x"
    )
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{name}.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _commit(tree: Path) -> str:
    done = subprocess.run(  # noqa: S603
        ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "?"


def _knows_repeats(tree: Path) -> bool:
    """Whether the harness of `tree` takes `run --repeats` (older ones ran each case once)."""
    python = tree / ".venv" / "bin" / "python"
    done = subprocess.run(  # noqa: S603
        [str(python), "-m", "benchmarks", "run", "--help"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    return "--repeats" in done.stdout
