"""The report's machine section (benchmarks/report.py): a report whose cases ran on more than
one machine names each machine with its cases."""

from __future__ import annotations

from typing import Any

from benchmarks.report import _machine


def record(case: str, cpu: str, commit: str) -> dict[str, Any]:
    """A result record with what the machine section reads."""
    load = {"loadavg": [0.5, 0.4, 0.3], "cpu_some_avg60": 1.0, "io_some_avg60": 0.0}
    machine = {
        "cpu": cpu, "cpus": 2, "memory": "25165824 kB", "os": "Linux", "python": "3.11.7",
        "commit": commit, "dirty": False, "date": "2026-12-05T10:00:00+00:00",
    }  # fmt: skip
    return {
        "case": case, "machine": machine, "load_before": load, "load_after": load,
        "client_cpu": 0,
    }  # fmt: skip


def test_one_machine_is_one_line() -> None:
    lines = _machine([record("a", "AMD EPYC", "abc"), record("b", "AMD EPYC", "abc")])
    assert "- AMD EPYC, 2 CPUs, 24 GiB RAM; Linux; Python 3.11.7." in lines


def test_each_machine_is_named_with_the_cases_it_measured() -> None:
    lines = _machine(
        [
            record("b", "AMD EPYC", "abc"),
            record("c", "Intel Xeon", "def"),
            record("a", "AMD EPYC", "abc"),
        ]
    )
    assert "- AMD EPYC, 2 CPUs, 24 GiB RAM; Linux; Python 3.11.7: a, b." in lines
    assert "- Intel Xeon, 2 CPUs, 24 GiB RAM; Linux; Python 3.11.7: c." in lines
