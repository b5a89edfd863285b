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
- **syncd is configured as an operator would** for a store whose limit is documented:
  `rate_limit = R` (the store's rate, `rate_burst` left at its default), `max_concurrency = 8`,
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
- Timings on a shared machine are noisy: compare CPU seconds per 10k products across runs, and
  rerun on a quiet machine for final figures.
"""

ANALYSIS: dict[str, str] = {
    "rate limit": """
The client-side bucket (`rate_limit = R`, default burst R) paces requests at exactly the store's
rate, so any jitter between the two buckets lets a request reach the store a moment before its
token has refilled: that request is answered 429 and every worker pauses for the whole
`Retry-After` (at least one second, R requests' worth). The fix belongs to the throttle: adapt the
rate on 429 (issue 5) or pace slightly under the documented rate with a burst of one.
""",
    "latency": """
With 50 ms per response, 8 requests in flight allow 16,000 products/s; syncd's ceiling is then its
CPU per product on one core (see "What bounds a full sync").
""",
    "throughput": """
On one core the event loop and the SQLite thread share the CPU, so throughput is one million
divided by the CPU microseconds per product in the stage table. Parsing JSON into Python objects
(the HTTP layer's `json.loads`) and SQLite's inserts (row, primary-key index, `updated_at` index
and the scan mark per product) are the largest shares.
""",
    "incremental": """
The incremental run's cost is its fixed start-up (opening the store, loading the persisted token)
plus about one request per 100 changed products.
""",
    "memory": """
Peak RSS includes the interpreter and its imports (about 40 MB before the first request).
""",
    "tokens": """
A token request per cold start is expected; more means the shared token cache did not
single-flight the first request of concurrent workers.
""",
}
