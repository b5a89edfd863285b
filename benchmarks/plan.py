"""What the harness runs: server profiles, catalog sizes, and the settings every case shares."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from syncd.emulator.cost import ServerCost

Platform = Literal["adobe", "americommerce"]

# A database-backed store's page time (syncd/emulator/cost.py): 4 ms, plus 0.04 ms per product
# on the page, plus 1 ms per decade of catalog (100 products of 100k: 13 ms), 4 pages at once.
# An independent Magento-like server measured 6-30 ms per page; the emulator alone, 0.5 ms.
SERVER_COST = ServerCost(base=0.004, per_item=0.00004, per_log10_catalog=0.001, workers=4)
# The admin-console token the emulated AmeriCommerce store accepts and the client sends.
AC_TOKEN = "bench-ac-token"  # noqa: S105 - the emulator's own fake credential
# AmeriCommerce's call window is 10 s; `--quick` shrinks it (the throttle scales with it).
AC_WINDOW = 10.0


# The syncd runs of a rate-limited Adobe case: told the limit, not told (a store's first sync, on a
# fresh database) and not told again (the next full sync, on the first one's database).
TOLD, UNTOLD, UNTOLD_NEXT = "told", "untold", "untold-next"
RATE_VARIANTS = (TOLD, UNTOLD, UNTOLD_NEXT)
UNTOLD_VARIANTS = (UNTOLD, UNTOLD_NEXT)  # no `rate_limit`, and not time-boxed (the whole search)


@dataclass(frozen=True, slots=True)
class Profile:
    """How the emulated store answers: its platform, an optional limit (a token bucket with 429 +
    Retry-After on Adobe; `X-AC-Call-Limit` calls per window on AmeriCommerce), latency, cost."""

    name: str
    rate: float | None = None
    burst: int | None = None
    latency: float = 0.0
    platform: Platform = "adobe"
    call_limit: int | None = None  # AmeriCommerce: calls per window
    other_calls: int = 0  # AmeriCommerce: another app's calls per window, at random moments
    window: float = AC_WINDOW
    cost: ServerCost | None = SERVER_COST

    @property
    def rate_limited(self) -> bool:
        """True if the store enforces a request rate (or a call window)."""
        return self.rate is not None or self.call_limit is not None

    @property
    def share(self) -> int | None:
        """AmeriCommerce: the calls per window left to syncd (the plan minus the other app)."""
        return None if self.call_limit is None else self.call_limit - self.other_calls

    def describe(self) -> str:
        """A short human description for tables."""
        parts = []
        if self.platform == "americommerce":
            parts.append("AmeriCommerce")
        if self.rate is not None:
            parts.append(f"{self.rate:g} req/s (burst {self.burst}), 429 + Retry-After")
        if self.call_limit is not None:
            parts.append(
                f"{self.call_limit} calls per {self.window:g} s, another app making "
                f"{self.other_calls} of them at random moments"
            )
        if self.latency:
            parts.append(f"+{self.latency * 1000:g} ms per response")
        if self.cost is not None:
            parts.append(f"server cost {self.cost.describe()}")
        return ", ".join(parts) or "no limit, no added latency"


def _limited(rate: int) -> Profile:
    # The store's token bucket holds a tenth of a second of requests (at least 2): the limit binds
    # from the first moments of every run (a one-second burst would hold a whole 100-request run at
    # R = 100, which then measures nothing), and little burst is the harder case for 429s.
    return Profile(f"rate{rate}", rate=float(rate), burst=max(2, rate // 10))


def _plan(calls: int) -> Profile:
    # Another app spends about 30% of every window, at moments syncd cannot predict; syncd is
    # told to leave it that many (`call_limit_reserve`), as an operator who knows the app would.
    other = max(1, round(calls * 0.3))
    return Profile(f"ac{calls}", platform="americommerce", call_limit=calls, other_calls=other)


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("nolimit"),
        Profile("latency50", latency=0.05),
        _limited(5),
        _limited(20),
        _limited(100),
        Profile("ac-nolimit", platform="americommerce"),
        _plan(5),
        _plan(10),
        _plan(20),
        _plan(50),
    )
}
DEFAULT_SIZES = (10_000, 100_000)
ONE_MILLION = 1_000_000
DEFAULT_SWEEP = (1, 2, 4, 8, 16, 32)
QUICK_SIZES = (2000,)
QUICK_WINDOW = 2.0


@dataclass(frozen=True, slots=True)
class Plan:
    """One invocation of `python -m benchmarks run`."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    profiles: tuple[Profile, ...] = tuple(PROFILES.values())
    include_1m: bool = False
    concurrency: int = 8
    page_size: int = 100
    change_share: float = 0.01
    # Rate-limited runs stop after this many seconds: the floor is about the sustained rate,
    # and a 100k catalog at 5 req/s would take 200 s per client.
    time_box: float = 120.0
    sweep: tuple[int, ...] = DEFAULT_SWEEP
    sweep_profile: str = "latency50"
    ac_sweep_profile: str = "ac-nolimit"
    sweep_repeats: int = 3
    # Every client run of a case is repeated this often; the floors take the median.
    repeats: int = 3
    pin: bool = True
    profile_stages: bool = True
    baseline: bool = True
    feed_repeats: int = 0
    """Full syncs with the change feed on (and as many off) at the largest size <= 100k."""
    # A sync smaller than one window's share (AmeriCommerce): pages of it, on the `ac10` plan.
    small_ac_pages: int = 5
    fleet: int = 0  # sources of the many-stores case (0: not run)
    fleet_products: int = 1000
    fleet_seconds: float = 180.0

    def cases(self) -> list[tuple[Profile, int]]:
        """Every (profile, size) pair to run; 1M products only without a rate limit (opt-in)."""
        out = [(p, n) for p in self.profiles for n in self.sizes]
        if self.include_1m:
            out += [(p, ONE_MILLION) for p in self.profiles if p.name == "nolimit"]
        return out

    def sweep_size(self) -> int:
        """The catalog of the throughput-vs-concurrency sweep: the smallest size asked for."""
        return min(self.sizes)


def quick(plan: Plan) -> Plan:
    """A smoke-sized plan: small catalogs, short boxes, a 2 s call window, one run each."""
    profiles = tuple(
        replace(p, window=QUICK_WINDOW) if p.platform == "americommerce" else p
        for p in plan.profiles
    )
    return replace(
        plan,
        sizes=QUICK_SIZES,
        profiles=profiles,
        time_box=10.0,
        sweep=(1, 4, 8),
        sweep_repeats=1,
        repeats=1,
        profile_stages=False,
        fleet_seconds=20.0,
    )


def case_name(profile: Profile, size: int) -> str:
    """`nolimit-100k`, `rate5-10k`, `nolimit-1m`."""
    return f"{profile.name}-{size_label(size)}"


def size_label(size: int) -> str:
    """10000 -> 10k, 1000000 -> 1m, 300 -> 300."""
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    if size >= 1000 and size % 1000 == 0:
        return f"{size // 1000}k"
    return str(size)
