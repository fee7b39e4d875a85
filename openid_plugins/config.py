"""Settings: keyword arguments, a mapping, or ``OPENID_PLUGINS_*`` environment variables.

Store and queue URLs are resolved in ``backends``; its functions are re-exported here, where
they were first documented."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import pluggy

from .backends import (  # noqa: F401 - re-exported: public names since 0.1
    file_url_path,
    open_queue,
    open_store,
    queue_schemes,
    scheme_of,
    store_schemes,
)
from .contracts import (
    ASSOCIATION_MODES,
    Clock,
    StoreOptions,
    op_endpoint_urls,
)
from .errors import ConfigurationError, PluginError
from .protocol.limits import FetchSettings

ENV_PREFIX = "OPENID_PLUGINS_"

@dataclass(frozen=True)
class Settings:
    """Everything a ``RelyingParty`` is configured with."""

    #: Store URL; None means the embedded default (a file store in the user data dir).
    store: str | None = None
    #: Queue URL for background associations; None means the embedded default file queue.
    queue: str | None = None
    association: str = "background"
    nonce_skew: float = 300.0
    #: A response arriving later than this after begin() is refused (seed 004's
    #: OPENID2RP_MAXLOGINDELAY); 0 disables the check.
    max_login_delay: float = 300.0
    #: How long discovery results are reused (seconds).
    discovery_ttl: float = 3600.0
    #: Stop using an association this long before it expires.
    association_margin: float = 60.0
    #: Remember an OP that refuses associations this long (no doomed attempts per login).
    refusal_ttl: float = 3600.0
    data_dir: str | None = None
    #: "none", or "thread" to run the background association fetcher inside this process.
    fetcher: str = "none"
    fetch: FetchSettings = field(default_factory=FetchSettings)
    #: Backend-specific options, passed to store/queue plugins as ``StoreOptions.extra``.
    store_options: Mapping[str, Any] = field(default_factory=dict)
    #: The only OP endpoints this site accepts assertions from (empty: any OP). A site that
    #: signs users in with one provider lists its endpoint here, so an assertion from any
    #: other OP is refused before it costs anything (``UntrustedProviderError``).
    allowed_op_endpoints: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.association not in ASSOCIATION_MODES:
            raise ConfigurationError(
                f"association={self.association!r} is not one of {', '.join(ASSOCIATION_MODES)}"
            )
        if self.fetcher not in ("none", "thread"):
            raise ConfigurationError(f"fetcher={self.fetcher!r} is not 'none' or 'thread'")
        if self.nonce_skew <= 0:
            raise ConfigurationError("nonce_skew must be a positive number of seconds")
        if self.allowed_op_endpoints:
            urls = op_endpoint_urls(self.allowed_op_endpoints, "allowed_op_endpoints")
            object.__setattr__(self, "allowed_op_endpoints", urls)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> Settings:
        """Settings from a mapping with the field names; ``fetch_*`` keys set FetchSettings.

        String values (from files or the environment) are converted to the field's type.
        """
        return cls().updated(**mapping)

    def updated(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (``fetch_<name>`` for FetchSettings fields)."""
        top = {f.name: f for f in fields(Settings)}
        fetch_fields = {f.name: f for f in fields(FetchSettings)}
        kwargs: dict[str, Any] = {}
        fetch: dict[str, Any] = {}
        for key, value in changes.items():
            key = key.lower()
            if key.startswith("fetch_") and key[6:] in fetch_fields:
                fetch[key[6:]] = _coerce(value, fetch_fields[key[6:]].type, key)
            elif key == "fetch" and isinstance(value, FetchSettings):
                kwargs["fetch"] = value
            elif key in top and key != "fetch":
                kwargs[key] = _coerce(value, top[key].type, key)
            else:
                raise ConfigurationError(f"unknown setting {key!r}")
        if fetch:
            kwargs["fetch"] = replace(kwargs.get("fetch", self.fetch), **fetch)
        return replace(self, **kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``OPENID_PLUGINS_STORE``, ``OPENID_PLUGINS_QUEUE``, ... ."""
        environ = os.environ if environ is None else environ
        # BLOCK is read by the plugin manager; TEST_* name servers for backend test suites.
        mapping = {
            key[len(ENV_PREFIX) :].lower(): value
            for key, value in environ.items()
            if key.startswith(ENV_PREFIX)
            and key[len(ENV_PREFIX) :] != "BLOCK"
            and not key[len(ENV_PREFIX) :].startswith("TEST_")
        }
        return cls.from_mapping(mapping)

    def resolved_data_dir(self) -> Path:
        if self.data_dir:
            return Path(self.data_dir).expanduser()
        import platformdirs

        return Path(platformdirs.user_data_dir("openid-plugins", appauthor=False))

    def store_url(self) -> str:
        return self.store or (self.resolved_data_dir() / "store").as_uri()

    def queue_url(self) -> str:
        return self.queue or (self.resolved_data_dir() / "queue").as_uri()


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    kind = str(annotation)
    if not isinstance(value, str):
        return value
    if kind.startswith("tuple[str"):
        # The environment's form of a list: comma-separated, blanks ignored.
        return tuple(item.strip() for item in value.split(",") if item.strip())
    try:
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("int"):
            return int(value)
        if kind.startswith("bool"):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
    except ValueError:
        raise ConfigurationError(f"setting {key!r}: {value!r} is not a valid {kind}") from None
    return value


def make_options(settings: Settings, clock: Clock) -> StoreOptions:
    return StoreOptions(clock=clock, nonce_skew=settings.nonce_skew, extra=settings.store_options)


def get_clock(pm: pluggy.PluginManager) -> Clock:
    clock = pm.hook.openid_clock()
    if clock is None:
        raise PluginError("no plugin provides a clock; is the built-in 'clock' plugin blocked?")
    return clock
