"""``openid-plugins demo``: the main job end to end, on this machine, with nothing else running.

It starts the development OP and a tiny relying-party web site (both on 127.0.0.1), then
plays the browser itself and prints each step with its timing:

1. a first login to an OP the site has never seen: discovery, the OP endpoint queued, no
   Diffie-Hellman on the user's path, the assertion verified statelessly;
2. the background fetcher making the association (the time a user would have waited);
3. a second login signed with that association (no check_authentication round trip);
4. the SREG and AX data the OP sent.

It uses the embedded default (file store and file queue) in a fresh temporary directory
unless ``--data-dir`` names one to keep. ``--serve`` then keeps both servers running for a
person with a browser, until Ctrl-C.
"""

from __future__ import annotations

import argparse
import html
import logging
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests

from .config import Settings
from .errors import ConfigurationError, OpenIDError
from .extensions.ax import AX
from .extensions.sreg import SReg
from .fetcher import BackgroundFetcher, FetcherThread
from .relying_party import AuthResult, RelyingParty
from .testing.provider import DevelopmentProvider

log = logging.getLogger("openid_plugins.demo")

USER = "alice"
SESSION_COOKIE = "demo_session"
#: What the demo site asks every OP for.
EXTENSIONS = (
    SReg(required=["email"], optional=["nickname", "fullname"]),
    AX(required=[AX.email], optional=[AX.first]),
)
#: Bound on every HTTP request the demo's browser makes: a hung server fails the demo.
HTTP_TIMEOUT = 30.0


class DemoError(OpenIDError):
    """A step of the demo did not behave as the library promises; the message says which."""


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command: 0 when every step behaved as expected, 1 otherwise."""
    say = _Printer()
    with ExitStack() as stack:
        if args.data_dir:
            data_dir = Path(args.data_dir).expanduser()
            try:
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                say.fail(f"cannot create the data directory {data_dir}: {exc}")
                return 1
        else:
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="openid-demo-")))
        try:
            op = stack.enter_context(DevelopmentProvider(users=(USER,)))
            # The development OP is on 127.0.0.1, which the SSRF guard refuses: the demo
            # turns the guard off, and the relying party logs a warning saying so.
            settings = Settings(
                data_dir=str(data_dir), association="background", fetcher="none"
            ).updated(**op.rp_settings)
            rp = stack.enter_context(RelyingParty(settings=settings))
            site = stack.enter_context(DemoSite(rp, op.identity_url(USER), port=args.port))
            say.header(op, site, rp, data_dir, kept=bool(args.data_dir))
            summary = Mission(op, site, rp, say).run()
            say.summary(summary)
        except OpenIDError as exc:
            say.fail(str(exc))
            return 1
        except requests.RequestException as exc:
            say.fail(f"an HTTP request of the demo's browser failed: {exc}")
            return 1
        if args.serve:
            serve(op, site, rp, say)
    return 0


def serve(op: DevelopmentProvider, site: DemoSite, rp: RelyingParty, say: _Printer) -> None:
    """Keep both servers up for a person with a browser, with the fetcher running in a
    thread (any other OP a person signs in with gets its association in the background)."""
    thread = FetcherThread(BackgroundFetcher(rp.associator, rp.queue, concurrency=2), poll=0.25)
    thread.start()
    stop = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    say.line("")
    say.line(f"Serving. Open {site.url}/ in a browser and sign in as {op.identity_url(USER)}")
    say.line(f"(or with any other OpenID). Development OP: {op.base_url}/ - Ctrl-C to stop.")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        thread.stop()
    say.line("Stopped.")


# -- the relying party's web site ----------------------------------------------------------


class DemoSite:
    """A minimal site using ``RelyingParty``: ``/`` (a login form), ``/login`` (begin, then a
    redirect to the OP) and ``/finish`` (complete, then who signed in and their data)."""

    def __init__(self, rp: RelyingParty, suggestion: str, *, port: int = 0) -> None:
        self.rp = rp
        self.suggestion = suggestion
        self._sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        #: The last login's outcome, for the demo's narration.
        self.last_result: AuthResult | None = None
        self.last_error: OpenIDError | None = None
        try:
            self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _site_handler(self))
        except OSError as exc:
            raise ConfigurationError(
                f"the demo site cannot listen on 127.0.0.1:{port} ({exc}); choose another"
                " --port, or leave it out for any free port"
            ) from exc
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="openid-demo-site",
            daemon=True,
        )

    def __enter__(self) -> DemoSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def session(self, cookie: str | None) -> tuple[str, dict[str, Any]]:
        with self._lock:
            if cookie not in self._sessions:
                cookie = secrets.token_urlsafe(16)
                self._sessions[cookie] = {}
            return cookie, self._sessions[cookie]

    def respond(self, path_qs: str, session: dict[str, Any]) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(path_qs)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.path == "/":
            return 200, {}, _page("Sign in", _login_form(self.suggestion))
        if parts.path == "/login":
            identifier = query.get("openid_identifier", "")
            try:
                auth = self.rp.begin(
                    identifier,
                    return_to=f"{self.url}/finish",
                    realm=f"{self.url}/",
                    session=session,
                    extensions=EXTENSIONS,
                )
            except OpenIDError as exc:
                return 400, {}, _page("Cannot sign in", _error_html(exc, self.suggestion))
            if auth.needs_form:
                return 200, {}, auth.form_html
            return 302, {"Location": auth.redirect_url}, ""
        if parts.path == "/finish":
            try:
                result = self.rp.complete(query, self.url + path_qs, session=session)
            except OpenIDError as exc:
                self.last_result, self.last_error = None, exc
                return 400, {}, _page("Sign-in failed", _error_html(exc, self.suggestion))
            self.last_result, self.last_error = result, None
            return 200, {}, _page("Signed in", _result_html(result))
        return 404, {}, _page("Not found", "<p>Nothing here: start at <a href='/'>/</a>.</p>")


def _site_handler(site: DemoSite) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            log.debug("%s " + format, self.address_string(), *args)

        def _cookie(self) -> str | None:
            for part in (self.headers.get("Cookie") or "").split(";"):
                name, _, value = part.strip().partition("=")
                if name == SESSION_COOKIE:
                    return value
            return None

        def do_GET(self) -> None:
            cookie, session = site.session(self._cookie())
            status, headers, text = site.respond(self.path, session)
            body = text.encode("utf-8")
            self.send_response(status)
            self.send_header("Set-Cookie", f"{SESSION_COOKIE}={cookie}; Path=/; HttpOnly")
            self.send_header("Content-Type", "text/html; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _page(title: str, body: str) -> str:
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"</head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    )


def _login_form(suggestion: str) -> str:
    return (
        "<form action='/login' method='get'><label>Your OpenID: "
        f"<input name='openid_identifier' size='50' value='{html.escape(suggestion)}'></label>"
        " <button>Sign in</button></form>"
    )


def _error_html(exc: OpenIDError, suggestion: str) -> str:
    return (
        f"<p class='error'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>"
        + _login_form(suggestion)
    )


def _result_html(result: AuthResult) -> str:
    rows = [
        ("Claimed identifier", result.claimed_id),
        ("OP endpoint", result.op_endpoint),
        ("Verified by", result.verified_by),
    ]
    rows += [(f"SREG {key}", value) for key, value in sorted(result.sreg.items())]
    rows += [(f"AX {uri}", ", ".join(values)) for uri, values in sorted(result.ax.items())]
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{table}</table><p><a href='/'>Sign in again</a></p>"


# -- the mission, driven by a scripted browser ---------------------------------------------


@dataclass
class Login:
    """One login as the browser saw it: time per hop, in seconds."""

    begin: float
    at_op: float
    complete: float
    result: AuthResult

    @property
    def total(self) -> float:
        return self.begin + self.at_op + self.complete


@dataclass
class Summary:
    first: Login
    second: Login
    association_seconds: float
    assoc_type: str
    counts: Mapping[str, int]


class Mission:
    """The four steps, each checked: a step that does not behave as promised raises
    ``DemoError`` naming what was expected and what happened."""

    def __init__(
        self, op: DevelopmentProvider, site: DemoSite, rp: RelyingParty, say: _Printer
    ) -> None:
        self.op = op
        self.site = site
        self.rp = rp
        self.say = say
        self.identifier = op.identity_url(USER)

    def run(self) -> Summary:
        first = self.first_login()
        seconds, assoc_type = self.make_association()
        second = self.second_login()
        self.show_data(second.result)
        return Summary(first, second, seconds, assoc_type, self.op.counts)

    def first_login(self) -> Login:
        self.say.step(1, "First login, to an OP this site has never seen (background mode)")
        login = self.login()
        counts = self.op.counts
        self.say.timed("begin(): discovery, then redirect to the OP", login.begin)
        pending = self.rp.queue.pending()
        self.say.note(f"no association yet: the OP endpoint was queued ({pending} waiting)")
        self.say.timed(f"the OP approved {USER} and sent the browser back", login.at_op)
        self.say.timed(
            f"complete(): verified by {login.result.verified_by} (stateless)", login.complete
        )
        self.say.timed(f"signed in as {login.result.claimed_id}", login.total, "total")
        self.say.counts(counts)
        _expect(counts["associate"] == 0, "no associate request on the user's path", counts)
        _expect(
            login.result.verified_by == "check_authentication",
            "the first login to be verified statelessly",
            login.result.verified_by,
        )
        _expect(pending >= 1, "the OP endpoint to be queued for the fetcher", pending)
        return login

    def make_association(self) -> tuple[float, str]:
        self.say.step(2, "The background fetcher makes the association (run_once)")
        fetcher = BackgroundFetcher(self.rp.associator, self.rp.queue)
        stats = fetcher.run_once()
        seconds = stats.timings.get(self.op.endpoint)
        association = self.rp.store.get_association(self.op.endpoint)
        if seconds is None or association is None:
            raise DemoError(
                f"expected the fetcher to associate with {self.op.endpoint}, but it reports:"
                f" {stats.summary()}"
            )
        self.say.timed(f"made 1 association ({association.assoc_type}, Diffie-Hellman)", seconds)
        self.say.note("that is the time a user would have waited in inline mode; nobody did")
        self.say.counts(self.op.counts)
        return seconds, association.assoc_type

    def second_login(self) -> Login:
        self.say.step(3, "Second login, signed with the association")
        checks_before = self.op.counts["check_authentication"]
        login = self.login()
        counts = self.op.counts
        self.say.timed("begin(): discovery from the cache, association handle sent", login.begin)
        self.say.timed(f"the OP approved {USER} and sent the browser back", login.at_op)
        self.say.timed(
            f"complete(): signature checked locally ({login.result.verified_by})", login.complete
        )
        self.say.timed(f"signed in as {login.result.claimed_id}", login.total, "total")
        self.say.counts(counts)
        _expect(
            login.result.verified_by == "association",
            "the second login to be verified with the association",
            login.result.verified_by,
        )
        _expect(
            counts["check_authentication"] == checks_before,
            "no check_authentication round trip",
            counts,
        )
        return login

    def show_data(self, result: AuthResult) -> None:
        self.say.step(4, "Profile data the OP sent (signed SREG and AX)")
        for key, value in sorted(result.sreg.items()):
            self.say.note(f"SREG {key:<9} {value}")
        for uri, values in sorted(result.ax.items()):
            self.say.note(f"AX   {uri}  {', '.join(values)}")
        _expect(bool(result.sreg.get("email")), "an email address by SREG", dict(result.sreg))
        _expect(bool(result.ax.get("email")), "an email address by AX", dict(result.ax))

    def login(self) -> Login:
        """Sign in as a browser would: a fresh cookie jar, every redirect timed and followed."""
        with requests.Session() as browser:
            query = urlencode({"openid_identifier": self.identifier})
            to_op, begin = _get(browser, f"{self.site.url}/login?{query}", 302, "/login")
            back, at_op = _get(browser, to_op.headers["Location"], 302, "the OP")
            page, complete = _get(browser, back.headers["Location"], None, "/finish")
        if page.status_code != 200 or self.site.last_result is None:
            raise DemoError(
                f"the site could not complete the login: {self.site.last_error or page.text[:200]}"
            )
        return Login(begin, at_op, complete, self.site.last_result)


def _get(
    browser: requests.Session, url: str, status: int | None, what: str
) -> tuple[requests.Response, float]:
    started = time.perf_counter()
    response = browser.get(url, allow_redirects=False, timeout=HTTP_TIMEOUT)
    elapsed = time.perf_counter() - started
    if status is not None and response.status_code != status:
        raise DemoError(
            f"{what} answered HTTP {response.status_code} where {status} was expected:"
            f" {response.text[:300]}"
        )
    return response, elapsed


def _expect(condition: bool, expected: str, actual: object) -> None:
    if not condition:
        raise DemoError(f"expected {expected}, but got: {actual}")


# -- output --------------------------------------------------------------------------------


class _Printer:
    """Plain lines on stdout, flushed at once so a pipe shows each step as it happens."""

    def line(self, text: str) -> None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def fail(self, text: str) -> None:
        sys.stdout.flush()
        sys.stderr.write(f"\nFAILED: {text}\n")
        sys.stderr.flush()

    def header(
        self,
        op: DevelopmentProvider,
        site: DemoSite,
        rp: RelyingParty,
        data_dir: Path,
        *,
        kept: bool,
    ) -> None:
        self.line("openid-plugins demo: sign in twice against a local OP, on the embedded default")
        self.line("")
        self.line(f"  development OP   {op.endpoint}  (approves {USER} without asking)")
        self.line(f"  demo site        {site.url}/")
        self.line(f"  store            {rp.settings.store_url()}")
        self.line(f"  queue            {rp.settings.queue_url()}")
        self.line(f"  data directory   {data_dir} ({'kept' if kept else 'removed at the end'})")
        self.line("  association      background: logins never wait for Diffie-Hellman")

    def step(self, number: int, title: str) -> None:
        self.line("")
        self.line(f"Step {number}. {title}")

    def note(self, text: str) -> None:
        self.line(f"  {text}")

    def timed(self, text: str, seconds: float, label: str = "") -> None:
        self.line(f"  {text:<60} {label:>5} {seconds * 1000:7.1f} ms")

    def counts(self, counts: Mapping[str, int]) -> None:
        names = ("associate", "checkid_setup", "check_authentication")
        self.line("  requests the OP received: " + ", ".join(f"{n} {counts[n]}" for n in names))

    def summary(self, summary: Summary) -> None:
        self.line("")
        self.line("Summary")
        self.line("  2 logins, 0 Diffie-Hellman exchanges while a user waited")
        self.line(
            f"  first login (stateless)   {summary.first.total * 1000:7.1f} ms"
            f"   second login (association) {summary.second.total * 1000:7.1f} ms"
        )
        self.line(
            f"  association ({summary.assoc_type}) made in the background in"
            f" {summary.association_seconds * 1000:.1f} ms"
        )
        self.line("  OK")
