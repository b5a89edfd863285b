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
  spends per scheduled run. The *process s* column beside it is the client process's whole life
  (interpreter start-up, imports, opening and closing the database), for a one-shot `syncd sync`.
- **Server cost.** The emulator alone serves a page in about half a millisecond of CPU from
  pre-rendered JSON; a database-backed store needs 6-30 ms. Every profile but the many-stores
  case therefore waits `base + per_item x page size + per_log10 x log10(catalog)` per list page on
  one of a few server workers (`syncd/emulator/cost.py`; the figures are in each case's title).
- **Repeats.** Every client run of a case is repeated (`--repeats`, 3 by default) on a fresh
  database; the floors take the median and show the range. The tables list every run.
- **One case** = one server profile and catalog size: a syncd full sync into an empty database;
  then 1% of the catalog changes (price and `updated_at`) and a syncd incremental run follows on
  the same database; then the baseline reads the whole catalog into its own empty database. The
  generated catalog's last edit is an hour old, so an incremental run's window holds exactly the
  changed products.
- **Rate-limited stores** answer through a token bucket of `R` requests per second holding a
  tenth of a second of them (at least 2): the limit binds from the start of every run, and with
  so little burst any request that arrives early is answered 429 (429 + `Retry-After`, the
  seconds until a token is back, at least 1).
- **syncd is configured as an operator would**, three times on a rate-limited store: *told*
  (the store's documented `rate_limit = R` and `rate_burst`), *not told* (no `rate_limit`: the
  adaptive rate has to find the limit, with the burst unknown; the store's first sync, on a
  fresh database) and *not told, next sync* (`untold-next`: the following full sync of that
  store, on the database of the first, where the search it made is saved with the source's
  pace, as the daemon's next scheduled run finds it). `max_concurrency = 8`, `page_size = 100`,
  every other setting at its default.
- **AmeriCommerce plans** (`ac5` ... `ac50`) allow that many calls per window (10 s; 2 s with
  `--quick`), and another app installed on the store spends about 30% of every window at random
  moments (seeded). syncd is told to leave that many (`call_limit_reserve`); % of allowed is its
  accepted calls over the calls each window leaves free, per window the run touched. Each repeat
  starts at a phase of the window drawn evenly (seeded): the first after a random part of a
  window, the others after a whole window and a random part, so that none starts in a window an
  earlier one spent (the first used to start about a second into a window, every time: 81% on
  ac5, where a 60 s box closes before the last window's burst leaves). A second, small sync of
  fewer pages than the share checks that no window boundary is waited for.
- **Two baselines.** `baseline (c=1)` is the client the S2S integration guide describes, ported
  faithfully, one request at a time; `baseline (c=8)` (`benchmarks/baseline_pooled.py`) follows
  the guide's advice to pool connections and run requests concurrently, as a user would write it:
  aiohttp with 8 connections, page 1 then 8 workers, `executemany` per page. The first: one token
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
  empty; the floors are medians for that reason.
- **Many stores** (`--fleet N`, `benchmarks/fleet.py`): N AmeriCommerce stores (one emulator, a
  token and a call window per store) in one daemon process as `syncd run` runs it, each on a
  short interval. RSS per idle source is the growth of the process's RSS, sampled when no run
  is going, over its RSS before the sources were built, divided by N; the start delay runs from
  APScheduler's submission of a due job to the start of its run; the event-loop lag is how late
  a 50 ms sleep wakes up.
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
Not told the limit, syncd starts unpaced (slow start: one request in flight, one more per
answer), and each 429 cuts its rate until a rate holds; it then searches between what held and
what drew a 429, reading what the store let through in each trial as a token bucket would have
it, and settles below the limit (`http.rate_summary` logs the rate it found). These runs are
the full sync, search included (not time-boxed). Every 429 costs its `Retry-After` (at least a
second here) for every worker, and at least one 429 is needed to learn that there is a limit:
at 100 requests/s a 100k-product sync lasts ten seconds, so that first second of pause alone is
about 9% of it, which puts 90% out of reach there (the search's virtual-time tests,
tests/test_rate_discovery.py, reach 73-88% at 100/s; >= 90% with < 1% 429s at 5/s and 20/s, and 93%
with 3 429s
at 20/s with a burst of 2, the rate20 profile, at round trips up to 20 ms). The arithmetic of
that first sync: its 1,000 requests take 10 s at the limit, so one 429 and a perfect guess
after it give at most 1,000 / (10 + 100 x 11) = 90.1% (89% with the 0.1 s of start and end a
told run has too), and the search needs two to four. What the search found is saved with
the source's pace (`source_rates`: the proven rate, the rate that drew a 429, the burst bound),
so the *next* full sync of the store resumes it, held 3% below the proven rate: no 429 to find
the limit again (the `untold-next` rows; virtual time: 95-97% with no 429 at 20/s and 100/s).
Pausing only the request that drew a 429 is what the pooled baseline (c=8) does (the guide's
sample client sleeps before its retry too, but being sequential it sends nothing meanwhile): at
100/s it reached 81-83% of the allowed rate with 6-7% of its requests refused in the latest
sitting, 89-97% with 4-5% in the one before, over the 1% floor either way. Adobe documents
`Retry-After` as the minimum time "the client must wait
before making another request", which is how syncd honours it.
Told the limit:

A 429 holds every worker of the source for its `Retry-After`, cuts the source's rate by
`rate_decrease` and wins it back by `rate_recovery_step` every `rate_recovery_interval` seconds:
one stray 429 costs the pause plus a few seconds below the limit, which a short run cannot make
up. Requests that were waiting for their turn during the pause queue again behind the new pace
(tests/test_pacing.py pins that a stray 429 draws no second one), so a run that misses this floor
had several requests arrive early: look at the 429 column and the machine's load for that run.
""",
    "CPU": """
Measured by `python -m benchmarks cpu-ab --before CHECKOUT` (the client of each checkout in turn,
CPU seconds of its full sync of `nolimit-100k`, alternated pairs); what each round changed, the
instruction counts under callgrind (which do not move with the machine's load) and what is left
are in docs/PERFORMANCE-CPU.md.
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
SQLite writes the row, its key's index entry, a scan mark and a feed entry per product (a
`last_seen_scan` column instead of the `full_scan_seen` table would save a B-tree insert per new
product, but rewrite every unchanged row of a later scan: docs/PERFORMANCE-CPU.md); the event loop
still builds every product as Python objects to hash it (decoding only the stored columns and
keeping each item's bytes as received would remove most of that, but changes the hash and the
payload's form). The figures come from a shared two-core machine: rerun on a quiet one.
""",
    "call window": """
syncd's own share of an AmeriCommerce window is the plan minus `call_limit_reserve`; the
store's count stops it only when the window is full. The measure: a time-boxed run of w seconds
is judged on w / window + 1 windows, the number it touches on average over where in a window it
starts, each leaving the whole share free (its last window too: a client that knew when windows
open could use it); a finished run on the windows from its first call's to its last's, counted
by the emulator, the last one only for the calls the sync still needed. Calls an earlier run
made in a run's first window are not counted as free to it. Repeats follow each other in one
emulator, each on a fresh database (a new process knows nothing of the window its predecessor
left), so the harness waits a random part of a window before the first repeat, and a window
and a random part of another between repeats: each starts in a window no earlier run touched,
at a phase drawn evenly over the window (seeded), as the measure assumes (back to back, each
started about a second later in the window than the one before, and in a window its
predecessor had spent: a 429 no client could avoid on a fresh database; and the first always
started about a second after the emulator's windows began, its start-up and the client's, the
phase where a 60 s box closes a second into its last window, before syncd's estimate of when
windows open, learned to within a few seconds, lets its burst leave: 81% there on every run). A
process restarted on the same database (or another owner) resumes that window from
`source_rates` and does not draw even that one. syncd learns when windows open with a probe
call held back from a window's share, sent part-way into the interval where the next boundary
may fall, until one has landed in a new window and the interval is narrower than two shares'
worth of time; a time-boxed run loses its last window when the box closes before syncd's phase
estimate says it opened. On ac5, whose share is 3 calls, a probe that lands in the next window
costs a third of a window and a missed last window a seventh of a 60 s run: 94.3-94.4% on
average over two sets of 320 seeded runs in virtual time, 92.5-93.4% of them at 90% or more
(probing on to one share's worth: 93.7%, the same runs; it was 91.0% before probes learned the
phase); the larger plans lose a call or two in learning and their last window rarely.
tests/test_call_limit.py runs the same plans in virtual time.
""",
    "many stores": """
What the sources themselves cost is small: built and scheduled, each adds well under 0.1 MB
(its settings, client, throttles and APScheduler job). The RSS that remains after the first
runs is the high-water mark of the start-up: every interval source is due at once, so N full
runs hold their pages at the same time, and the memory freed afterwards stays with the process
(Python's allocator keeps its arenas). Until the daemon spreads its first runs or caps how many
run at once, that peak grows with the number of sources. The daemon's monitor used to re-read
every source's state twice after every run, which made a cycle's CPU grow with the square of
the number of sources; it now re-reads only the source that ran.
""",
    "incremental": """
An incremental run costs its fixed start (state, run row, token) plus one request per 100
changed products. The next keyset page is asked for while the current one is committed, and a read
of six pages or more goes on in two entity-id ranges side by side after its first page (one request
more for the highest id, and at most one partly filled page): 1,000 changes take 12 requests at
most, about seven server round trips in a row instead of ten (docs/SYNC.md).
""",
    "memory": """
Peak RSS includes the interpreter and its imports (about 40 MB before the first request).
""",
    "tokens": """
A token request per cold start is expected; more means the shared token cache did not
single-flight the first requests of concurrent workers.
""",
}
