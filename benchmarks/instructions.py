"""The syncd client's user-space instructions per 10,000 products, under valgrind's callgrind: a
CPU figure that does not move with the machine's load (docs/PERFORMANCE-CPU.md).

    python -m benchmarks.instructions [--client-tree DIR] [--small 2000] [--large 12000]

Runs one full sync of `--small` and one of `--large` products by the client of `--client-tree`
(a checkout with its own `.venv`, default this one) under callgrind, against this checkout's
emulator in a process of its own, and prints the difference scaled to 10,000 products: what the
products cost without the start-up (imports), which both runs share. Every thread of the client
counts; the kernel's work (the system calls) does not, and valgrind's CPU has no SHA extensions,
so the hash weighs about ten times what it does on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent.parent


def instructions(client_tree: Path, products: int) -> int:
    """The client's instruction count for one full sync of `products` products."""
    emulator = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
        [sys.executable, "-m", "benchmarks.emulator_proc", "--products", str(products)],
        cwd=_HERE,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdin is not None and emulator.stdout is not None
    try:
        where = json.loads(emulator.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="syncd-instructions-") as scratch:
            client = [
                "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                str(client_tree / ".venv/bin/python"), "-m", "benchmarks.syncd_client",
                "--url", where["url"], "--token-url", where["ims_token_url"],
                "--db", str(Path(scratch) / "store.db"), "--kind", "full",
            ]  # fmt: skip
            # The client tree's own code first, whichever checkout its venv was installed from.
            env = {**os.environ, "PYTHONPATH": str(client_tree)}
            done = subprocess.run(  # noqa: S603 - valgrind and a checkout's venv, no shell
                client, cwd=client_tree, env=env, capture_output=True, text=True, check=False
            )
    finally:
        emulator.stdin.write("quit\n")
        emulator.stdin.flush()
        emulator.wait(30)
    outcome = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if outcome.get("stored") != products:
        raise SystemExit(f"the sync did not store {products} products: {done.stderr[-2000:]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> None:
    """Parse, run both sizes, print the counts and the difference per 10,000 products."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--client-tree", type=Path, default=_HERE)
    parser.add_argument("--small", type=int, default=2_000)
    parser.add_argument("--large", type=int, default=12_000)
    args = parser.parse_args(argv)
    tree = args.client_tree.resolve()
    small, large = instructions(tree, args.small), instructions(tree, args.large)
    per_10k = (large - small) * 10_000 / (args.large - args.small)
    print(
        f"{tree}: {small:,} instructions at {args.small} products, {large:,} at {args.large}: "
        f"{per_10k:,.0f} per 10,000 products",
        flush=True,
    )


if __name__ == "__main__":
    main()
