"""Settings (keyword arguments, a mapping, or ``OPENID_PLUGINS_*`` environment variables) and
the resolution of store and queue URLs through the plugin hooks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pluggy

from .contracts import Clock, Queue, Store, StoreOptions
from .errors import ConfigurationError, PluginError, UnknownSchemeError

ENV_PREFIX = "OPENID_PLUGINS_"
ASSOCIATION_MODES = ("background", "inline", "stateless")

#: Which distribution provides a scheme we do not ship in the core, for error messages.
SCHEME_PROVIDERS = {
    "sqlite": "openid-plugins-sql",
    "postgresql": "openid-plugins-sql",
    "postgres": "openid-plugins-sql",
    "mysql": "openid-plugins-sql",
    "mariadb": "openid-plugins-sql",
    "memcached": "openid-plugins-memcached",
    "mongodb": "openid-plugins-mongodb",
}


@dataclass(frozen=True)
class FetchSettings:
    """Limits for every HTTP request the relying party makes (discovery, associate,
    check_authentication)."""

    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    #: Responses are streamed and cut off past this many bytes.
    max_bytes: int = 1024 * 1024
    max_redirects: int = 5
    #: Wall-clock limit for one fetch, redirects included, so a server that drips bytes
    #: slowly (each read within ``read_timeout``) still cannot hold a request forever.
    total_timeout: float = 30.0
    verify_tls: bool = True
    #: Refuse private, loopback and link-local addresses (SSRF guard; ruby-openid
    #: CVE-2019-11027). Off by default so local development works.
    block_private_addresses: bool = False
    user_agent: str = "openid-plugins"


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

    def __post_init__(self) -> None:
        if self.association not in ASSOCIATION_MODES:
            raise ConfigurationError(
                f"association={self.association!r} is not one of {', '.join(ASSOCIATION_MODES)}"
            )
        if self.fetcher not in ("none", "thread"):
            raise ConfigurationError(f"fetcher={self.fetcher!r} is not 'none' or 'thread'")
        if self.nonce_skew <= 0:
            raise ConfigurationError("nonce_skew must be a positive number of seconds")

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


def scheme_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if not scheme:
        raise ConfigurationError(f"{url!r} is not a URL; use e.g. file:///var/lib/app/openid")
    return scheme.split("+", 1)[0]


def file_url_path(url: str) -> Path:
    """The local path of a ``file://`` URL (``file:///abs`` or ``file://~/rel``)."""
    parts = urlsplit(url)
    path = (
        unquote(parts.netloc + parts.path)
        if parts.netloc not in ("", "localhost")
        else unquote(parts.path)
    )
    if not path:
        raise ConfigurationError(f"{url!r} names no directory")
    return Path(path).expanduser()


def make_options(settings: Settings, clock: Clock) -> StoreOptions:
    return StoreOptions(clock=clock, nonce_skew=settings.nonce_skew, extra=settings.store_options)


def _schemes(pm: pluggy.PluginManager, hook_name: str) -> list[str]:
    found: set[str] = set()
    for result in getattr(pm.hook, hook_name)():
        found.update(s.lower() for s in result or ())
    return sorted(found)


def store_schemes(pm: pluggy.PluginManager) -> list[str]:
    return _schemes(pm, "openid_store_schemes")


def queue_schemes(pm: pluggy.PluginManager) -> list[str]:
    return _schemes(pm, "openid_queue_schemes")


def _open(pm: pluggy.PluginManager, kind: str, url: str, options: StoreOptions) -> Any:
    """Ask the ``openid_make_<kind>`` hook for a backend; one plugin answers per scheme."""
    scheme = scheme_of(url)
    made = getattr(pm.hook, f"openid_make_{kind}")(url=url, options=options)
    if made is None:
        installed = _schemes(pm, f"openid_{kind}_schemes")
        hint = SCHEME_PROVIDERS.get(scheme)
        advice = f"; install {hint} to use it" if hint else ""
        raise UnknownSchemeError(
            f"no installed plugin makes a {kind} for {scheme}:// URLs ({url!r}){advice}. "
            f"Installed {kind} schemes: {', '.join(installed) or 'none'}"
        )
    expected = Store if kind == "store" else Queue
    if not isinstance(made, expected):
        raise PluginError(
            f"the plugin for {scheme}:// returned {type(made)!r}, not a {expected.__name__}"
        )
    return made


def open_store(pm: pluggy.PluginManager, url: str, options: StoreOptions) -> Store:
    return _open(pm, "store", url, options)


def open_queue(pm: pluggy.PluginManager, url: str, options: StoreOptions) -> Queue:
    return _open(pm, "queue", url, options)


def get_clock(pm: pluggy.PluginManager) -> Clock:
    clock = pm.hook.openid_clock()
    if clock is None:
        raise PluginError("no plugin provides a clock; is the built-in 'clock' plugin blocked?")
    return clock
