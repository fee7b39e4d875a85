"""An example plugin: counts association events (made, refused, failed) for a site's
metrics. Shown and run by docs/plugins.rst."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from openid_plugins import hookimpl


class AssociationMetrics:
    """Register an instance: ``RelyingParty(plugins=[AssociationMetrics()])``, or the module
    through the ``openid_plugins`` entry-point group."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    @hookimpl
    def openid_association_event(
        self, event: str, server_url: str, details: Mapping[str, Any]
    ) -> None:
        self.counts[event] += 1
