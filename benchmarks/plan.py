"""What the harness runs: server profiles, catalog sizes, and the settings every case shares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Profile:
    """How the emulated store answers: an optional rate limit (429 + Retry-After) and latency."""

    name: str
    rate: float | None = None
    burst: int | None = None
    latency: float = 0.0

    @property
    def rate_limited(self) -> bool:
        """True if the store enforces a request rate."""
        return self.rate is not None

    def describe(self) -> str:
        """A short human description for tables."""
        parts = []
        if self.rate is not None:
            parts.append(f"{self.rate:g} req/s (burst {self.burst}), 429 + Retry-After")
        if self.latency:
            parts.append(f"+{self.latency * 1000:g} ms per response")
        return ", ".join(parts) or "no limit, no added latency"


def _limited(rate: int) -> Profile:
    # The store's token bucket holds a tenth of a second of requests (at least 2): the limit binds
    # from the first moments of every run (a one-second burst would hold a whole 100-request run at
    # R = 100, which then measures nothing), and little burst is the harder case for 429s.
    return Profile(f"rate{rate}", rate=float(rate), burst=max(2, rate // 10))


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("nolimit"),
        Profile("latency50", latency=0.05),
        _limited(5),
        _limited(20),
        _limited(100),
    )
}
DEFAULT_SIZES = (10_000, 100_000)
ONE_MILLION = 1_000_000
DEFAULT_SWEEP = (1, 2, 4, 8, 16, 32)


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
    time_box: float = 60.0
    sweep: tuple[int, ...] = DEFAULT_SWEEP
    sweep_profile: str = "latency50"
    sweep_repeats: int = 3
    pin: bool = True
    profile_stages: bool = True
    baseline: bool = True
    feed_repeats: int = 0
    """Full syncs with the change feed on (and as many off) at the largest size <= 100k."""

    def cases(self) -> list[tuple[Profile, int]]:
        """Every (profile, size) pair to run; 1M products only without a rate limit (opt-in)."""
        out = [(p, n) for p in self.profiles for n in self.sizes]
        if self.include_1m:
            out += [(p, ONE_MILLION) for p in self.profiles if p.name == "nolimit"]
        return out

    def sweep_size(self) -> int:
        """The catalog of the throughput-vs-concurrency sweep: the smallest size asked for."""
        return min(self.sizes)


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
