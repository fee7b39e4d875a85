"""Built-in plugin: the system clock, the fallback of the ``openid_clock`` hook."""

from __future__ import annotations

from .contracts import Clock, SystemClock
from .hookspecs import hookimpl


@hookimpl(trylast=True)
def openid_clock() -> Clock:
    return SystemClock()
