"""Test helpers for backends and sites: ``FakeClock`` and the executable Store/Queue contracts
(``openid_plugins.testing.contract``, a pytest plugin)."""

from .clock import FakeClock

__all__ = ["FakeClock"]
