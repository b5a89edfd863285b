"""The report's fixed prose: how the figures are taken, and what a missed floor means. No figures
here: every number in docs/PERFORMANCE.md is read from the JSON results."""

from __future__ import annotations

METHOD = """
## How the figures are taken

- **Processes.** Each case starts the emulator (`benchmarks/emulator_proc.py`) in its own process
  on a free loopback port, with every product pre-rendered so no client pays the emulator's cold
  cache. Each client run is a fresh process (`benchmarks/syncd_client.py`,
  `benchmarks/baseline.py`), so its CPU seconds (`getrusage`, all threads) and peak RSS
  (`ru_maxrss`, interpreter and imports included) are its own. Wall and CPU time cover the run
  itself, from its first request (the token's, on a cold start) to its last commit: what a daemon
  spends per scheduled run. Process start-up, opening and closing the database are not counted,
  for syncd and the baseline alike.
- **One case** = one server profile and catalog size: a syncd full sync into an empty database;
  then 1% of the catalog changes (price and `updated_at`) and a syncd incremental run follows on
  the same database; then the baseline reads the whole catalog into its own empty database. The
  generated catalog's last edit is an hour old, so an incremental run's window holds exactly the
  changed products.
- **Rate-limited stores** answer through a token bucket of `R` requests per second holding a
  tenth of a second of them (at least 2): the limit binds from the start of every run, and with
  so little burst any request that arrives early is answered 429 (429 + `Retry-After`, the
  seconds until a token is back, at least 1).
- **syncd is configured as an operator would** for a store whose limit is documented:
  `rate_limit = R` and `rate_burst` = the store's burst, `max_concurrency = 8`,
  `page_size = 100`, every other setting at its default.
- **The baseline** is the client the S2S integration guide describes, ported faithfully: one token
  manager caching the IMS token until `expires_in`, sequential `currentPage` paging, sleep
  `Retry-After` on 429 and retry, one `INSERT OR REPLACE` per product with the standard `sqlite3`
  module (default journal), a commit per page. It sorts by `entity_id` (otherwise Magento pages
  repeat and skip products) and commits per page rather than per row; both favour it.
- **% of allowed** is accepted (non-429) requests divided by what the store's token bucket admits
  in the run's wall time: its burst plus `R` per second. It cannot exceed 100%.
- **Rate-limited runs are time-boxed** (the case says at how many seconds): the floor is about the
  sustained rate, and 100,000 products at 5 requests/s would take over three minutes per client.
  A boxed run is cancelled at the deadline and its counts are those committed until then.
- **Tokens** are counted by the emulator: a cold run (empty database) asks once whatever its
  concurrency; the incremental run reuses the token the full run persisted.
- **A run whose requests all fit the store's burst** would never be rate-limited, so the rate
  floor would be marked n/a for it; with the bursts above no planned case is one.
- **Rate-limited runs vary from run to run**: a request delayed on its way (a busy event loop, a
  connection being opened) can reach the store right behind the next one and find its bucket
  empty. The tables are one run: rerun to see the spread.
- Timings on a shared machine are noisy: compare CPU seconds per 10k products across runs, and
  rerun on a quiet machine for final figures.
"""

ANALYSIS: dict[str, str] = {
    "rate limit, CPU": """
At R = 100 the floor asks for about 9,000 products/s sustained (90% of 100 requests/s of 100
products): the throughput floor again. These runs drew no 429: syncd was bound by its CPU per
product on one core (see "What bounds a full sync"), not by the store's limit, and the share it
reaches moves with the CPU left to it by other work on the machine.
""",
    "rate limit, 429s": """
A 429 holds every worker of the source for its `Retry-After`, cuts the source's rate by
`rate_decrease` and wins it back by `rate_recovery_step` every `rate_recovery_interval` seconds:
one stray 429 costs the pause plus a few seconds below the limit, which a short run cannot make
up. Requests that were waiting for their turn during the pause queue again behind the new pace
(tests/test_pacing.py pins that a stray 429 draws no second one), so a run that misses this floor
had several requests arrive early: look at the 429 column and the machine's load for that run.
""",
    "latency": """
With 50 ms per response and 8 requests in flight the store allows 16,000 products/s, so syncd is
bound by its CPU per product here as well (the throughput floor). A 10,000-product catalog is
also short: page 1 is read alone (it tells `total_count`) before the other pages go out
concurrently, and that first round trip weighs more on a one-second run.
""",
    "throughput": """
syncd is CPU-bound on one core: the event loop and the SQLite thread share it, so throughput is
a million divided by the CPU microseconds per product in the stage table. What would move it:
SQLite writes the row, two index entries and a scan mark per product (a `last_seen_scan` column
instead of the `full_scan_seen` table would save a B-tree insert per product); the event loop
still builds every product as Python objects to hash it (decoding only the stored columns and
keeping each item's bytes as received would remove most of that, but changes the hash and the
payload's form). The figures come from a shared two-core machine: rerun on a quiet one.
""",
    "incremental": """
An incremental run costs its fixed start (state, run row, token) plus one request per 100
changed products, read one after the other.
""",
    "memory": """
Peak RSS includes the interpreter and its imports (about 40 MB before the first request).
""",
    "tokens": """
A token request per cold start is expected; more means the shared token cache did not
single-flight the first requests of concurrent workers.
""",
}
