"""The collector policy of a syncd process: frozen start-up objects, rarer young collections."""

from __future__ import annotations

import subprocess
import sys


def test_the_console_script_tunes_its_own_process_only() -> None:
    """`python -m syncd` freezes and raises the young threshold; importing the CLI does not."""
    probe = (
        "import gc, runpy, sys; before = gc.get_threshold(); import syncd.cli; "
        "assert gc.get_threshold() == before and gc.get_freeze_count() == 0; "
        "sys.argv = ['syncd', '--version']; "
        "import atexit; atexit.register(lambda: print(gc.get_threshold()[0], gc.get_freeze_count() > 0)); "
        "runpy.run_module('syncd', run_name='__main__')"
    )
    done = subprocess.run(  # noqa: S603 - our own interpreter and a fixed probe
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    threshold, frozen = done.stdout.split()[-2:]
    assert (int(threshold), frozen) == (50_000, "True")
