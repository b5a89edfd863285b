"""A pause shared by every worker of one source: one 429 holds them all until `Retry-After` is over."""

from __future__ import annotations

from syncd.clock import Clock


class PauseGate:
    """Workers `wait()` before each request; `pause(seconds)` closes the gate for everyone."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._resume_at = 0.0

    @property
    def paused_for(self) -> float:
        """Seconds until the gate opens (0 when open)."""
        return max(0.0, self._resume_at - self._clock.monotonic())

    def pause(self, seconds: float) -> None:
        """Close the gate for `seconds` from now; a longer pause already in force wins."""
        self._resume_at = max(self._resume_at, self._clock.monotonic() + seconds)

    async def wait(self) -> None:
        """Return once the gate is open (loops because the pause may be extended meanwhile)."""
        while (delay := self._resume_at - self._clock.monotonic()) > 0:
            await self._clock.sleep(delay)
