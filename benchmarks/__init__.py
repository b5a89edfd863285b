"""Benchmarks of syncd against the emulator's limits and against the reference-document client.

Run `python -m benchmarks run` (measure, write `benchmarks/results/*.json`) and
`python -m benchmarks report` (regenerate `docs/PERFORMANCE.md` and the chart from that JSON).
Every client under test runs in a process of its own, and so does the emulator, so CPU seconds
and peak RSS belong to the client alone.
"""
