"""What a hostile answer costs `syncd sync`: peak RSS, wall time, exit code and its one line.

    python -m benchmarks.hostile [--products 2000]

The emulator runs in this process; each case runs `syncd sync shop --full` as a child process on
a fresh database after a good first sync (so what was stored before must survive), and the child
reports its own peak RSS. A case fails (AssertionError) if any request reaches the other origin.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from syncd.emulator import AdobeConfig, Emulator, EmulatorConfig, Fault

MB = 1000 * 1000

CASES: tuple[tuple[str, Callable[[str], Fault] | None], ...] = (
    ("no fault (baseline)", None),
    ("a 200 MB body on every answer", lambda _: Fault("oversized", size=200 * MB, times=None)),
    ("total_count 10^12", lambda _: Fault("huge_total", times=None)),
    ("JSON nested 100,000 levels", lambda _: Fault("nested", times=None)),
    (
        "Retry-After: 5 (once, for comparison)",
        lambda _: Fault("status", status=429, retry_after="5"),
    ),
    ("Retry-After: ² (once)", lambda _: Fault("status", status=429, retry_after="²")),
    (
        "API 302 to another origin",
        lambda other: Fault("redirect", status=302, location=other, times=None),
    ),
    (
        "token endpoint 307 to another origin",
        lambda other: Fault("redirect", target="token", status=307, location=other, times=None),
    ),
)


def config_text(emu: Emulator, db: Path) -> str:
    """A TOML configuration for one Adobe source on `emu`."""
    adobe = emu.adobe.config
    return f"""
log_format = "json"
[store]
path = "{db}"
[[sources]]
name = "shop"
kind = "adobe_commerce"
base_url = "{emu.url}"
page_size = 100
[sources.auth]
token_url = "{emu.ims_token_url}"
client_id = "{adobe.client_id}"
client_secret = "{adobe.client_secret}"
org_id = "{adobe.org_id}"
"""


# The child reports its own peak RSS (ru_maxrss of RUSAGE_SELF, KiB on Linux) as its last line.
_CHILD = (
    "import resource, sys\n"
    "from syncd.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('peak_rss_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


async def run_sync(config: Path) -> tuple[int, float, float, str]:
    """Exit code, wall seconds, peak RSS (MB) and the last stderr line of one `syncd sync`."""
    started = time.perf_counter()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _CHILD,
        "--config",
        str(config),
        "sync",
        "shop",
        "--full",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await child.communicate()
    wall = time.perf_counter() - started
    lines = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
    rss = float(lines.pop().split()[1]) / 1024 if lines else float("nan")
    return child.returncode or 0, wall, rss, (lines[-1] if lines else "")[:200]


def stored(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(
            conn.execute("SELECT count(*) FROM products WHERE deleted_at IS NULL").fetchone()[0]
        )


async def main(products: int) -> None:
    print("| case | exit | wall s | peak RSS MB | live products after | last line |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            Emulator(EmulatorConfig(adobe=AdobeConfig(products=products), seed=1)) as emu,
            Emulator(EmulatorConfig(adobe=AdobeConfig(products=1), seed=2)) as other,
        ):
            for n, (name, make) in enumerate(CASES):
                db = Path(tmp) / f"case{n}.db"
                config = Path(tmp) / f"case{n}.toml"
                config.write_text(config_text(emu, db), encoding="utf-8")
                emu.adobe.faults.clear()
                first = await run_sync(config)
                assert first[0] == 0, first
                requests = other.adobe.stats.requests + other.adobe.stats.token_requests
                if make is not None:
                    emu.adobe.revoke_tokens()  # so the token path is exercised too
                    emu.adobe.faults.add(make(other.url))
                code, wall, rss, line = await run_sync(config)
                leaked = other.adobe.stats.requests + other.adobe.stats.token_requests - requests
                assert leaked == 0, f"{name}: {leaked} requests reached the other origin"
                shown = line.replace("|", "/")
                print(f"| {name} | {code} | {wall:.2f} | {rss:.0f} | {stored(db)} | `{shown}` |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=2000)
    asyncio.run(main(parser.parse_args().products))
