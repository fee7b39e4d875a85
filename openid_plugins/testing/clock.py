"""A clock tests move by hand, so expiry, lease and nonce-skew rules are tested without sleeping."""

from __future__ import annotations

import threading
import time


class FakeClock:
    """A ``Clock`` (see ``openid_plugins.contracts``) that only moves when told to.

    It starts at the real time by default, so nonces stamped with the system clock by other
    processes are within skew of it.
    """

    def __init__(self, start: float | None = None) -> None:
        self._lock = threading.Lock()
        self._now = time.time() if start is None else float(start)

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward (or back, with a negative value) and return the new time."""
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, t: float) -> None:
        with self._lock:
            self._now = float(t)

    def __repr__(self) -> str:
        return f"FakeClock({self.now()!r})"
