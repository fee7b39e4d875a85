"""Every fetch is bounded end to end (issue 15): connect, TLS, status line, headers, body.

Real servers on 127.0.0.1 that misbehave at the byte level: one trickles its answer a byte
at a time (each byte well within ``read_timeout``, so only a deadline over the whole fetch
ends it), one accepts connections and never says anything. No timed assertions: each test
asserts the typed error, and pytest-timeout bounds the test.
"""

from __future__ import annotations

import socket
import threading

import pytest

from openid_plugins.errors import FetchTimeoutError, IncorrectClaimError
from openid_plugins.protocol.fetch import Fetcher
from openid_plugins.protocol.limits import FetchSettings

pytestmark = pytest.mark.timeout(30)

#: Per-read limits far above the budgets below: only the deadline can end these fetches.
#: Generous limits, so only the one under test ends a fetch; the servers are on 127.0.0.1.
PATIENT = {
    "connect_timeout": 20,
    "read_timeout": 20,
    "total_timeout": 60,
    "block_private_addresses": False,
}
STATUS_LINE_TRICKLE = b"HTTP/1.1 200 " + b"O" * 10_000
HEADER_TRICKLE = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Slow: " + b"a" * 10_000


class TrickleServer:
    """Accepts connections and sends ``data`` one byte every ``interval`` seconds."""

    def __init__(self, data: bytes, interval: float = 0.05) -> None:
        self.data = data
        self.interval = interval
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: socket.socket) -> None:
        with conn:
            for byte in self.data:
                if self.stopping.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return  # the client gave up, as it should

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()


class SilentServer:
    """A listening socket that never accepts: the kernel completes TCP handshakes (up to
    the backlog) and nothing is ever sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=16)
        self.port = self.listener.getsockname()[1]

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture
def trickle():
    made: list[TrickleServer] = []

    def make(data: bytes) -> TrickleServer:
        made.append(TrickleServer(data))
        return made[-1]

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.stop()


def patient_fetcher(**settings) -> Fetcher:
    return Fetcher(FetchSettings(**{**PATIENT, **settings}))


# -- the fetcher alone ----------------------------------------------------------------------


@pytest.mark.parametrize("data", [STATUS_LINE_TRICKLE, HEADER_TRICKLE], ids=["status", "headers"])
def test_trickled_status_line_or_headers_end_at_total_timeout(trickle, data):
    server = trickle(data)
    fetcher = patient_fetcher(total_timeout=0.5)
    with fetcher, pytest.raises(FetchTimeoutError, match="total_timeout=0.5s"):
        fetcher.get(server.url())


@pytest.mark.parametrize("data", [STATUS_LINE_TRICKLE, HEADER_TRICKLE], ids=["status", "headers"])
def test_trickle_inside_a_user_scope_ends_at_its_budget(trickle, data):
    server = trickle(data)
    fetcher = patient_fetcher()
    with fetcher, fetcher.scope(0.5), pytest.raises(FetchTimeoutError, match="fetch_user_timeout"):
        fetcher.post(server.url("/op"), {"openid.mode": "check_authentication"})


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_server_that_never_answers_ends_at_the_deadline(silent, scheme):
    """Over https the TLS handshake is what waits: it is bounded too."""
    fetcher = patient_fetcher(total_timeout=0.5)
    with fetcher, pytest.raises(FetchTimeoutError, match="total_timeout=0.5s"):
        fetcher.get(silent.url(scheme=scheme))


def test_a_scope_budget_is_shared_by_its_fetches(trickle):
    """Two fetches in one user-facing call share one budget; the first fetch's trickle
    leaves the second nothing, so the second times out without a connection."""
    server = trickle(STATUS_LINE_TRICKLE)
    with patient_fetcher() as fetcher, fetcher.scope(0.5):
        with pytest.raises(FetchTimeoutError):
            fetcher.get(server.url())
        connections = server.connections
        with pytest.raises(FetchTimeoutError, match="fetch_user_timeout"):
            fetcher.get(server.url())
    assert server.connections == connections


def test_host_names_resolve_within_the_deadline(server):
    """Names are looked up off the fetching thread, bounded by the fetch's deadline."""
    url = server.route("/doc", 200, {}, b"ok").replace("127.0.0.1", "localhost")
    fetcher = patient_fetcher(total_timeout=5)
    with fetcher, fetcher.scope(5):
        assert fetcher.get(url).body == b"ok"
    with fetcher, fetcher.scope(1e-9), pytest.raises(FetchTimeoutError):
        fetcher.get(url)


def test_the_user_budget_is_a_setting():
    from openid_plugins.config import Settings
    from openid_plugins.errors import ConfigurationError

    assert FetchSettings().user_timeout <= 8
    assert Settings.from_env({"OPENID_PLUGINS_FETCH_USER_TIMEOUT": "2.5"}).fetch.user_timeout == 2.5
    with pytest.raises(ConfigurationError, match="fetch_user_timeout"):
        FetchSettings(user_timeout=0)


# -- through begin() ----------------------------------------------------------------------


def rp_with_budget(make_rp, **settings):
    settings = {
        "association": "inline",
        "fetch_block_private_addresses": False,
        "fetch_connect_timeout": 20,
        "fetch_read_timeout": 20,
        "fetch_user_timeout": 0.5,
        **settings,
    }
    return make_rp(**settings)


@pytest.mark.parametrize("data", [STATUS_LINE_TRICKLE, HEADER_TRICKLE], ids=["status", "headers"])
def test_begin_with_a_trickling_identifier_fails_within_the_user_budget(make_rp, trickle, data):
    server = trickle(data)
    rp = rp_with_budget(make_rp)
    with pytest.raises(IncorrectClaimError, match="fetch_user_timeout") as caught:
        rp.begin(server.url("/alice"), "https://rp.example/finish", session={})
    assert isinstance(caught.value.__cause__, FetchTimeoutError)


def test_begin_with_a_never_answering_identifier_fails_within_the_user_budget(make_rp, silent):
    rp = rp_with_budget(make_rp)
    with pytest.raises(IncorrectClaimError, match="fetch_user_timeout") as caught:
        rp.begin(silent.url("/alice"), "https://rp.example/finish", session={})
    assert isinstance(caught.value.__cause__, FetchTimeoutError)


def test_begin_with_a_trickling_op_goes_on_statelessly(make_rp, trickle, server, caplog):
    """Discovery answers; the OP's associate endpoint trickles. The inline association
    gives up at the budget and the user is sent to the OP without one."""
    op = trickle(HEADER_TRICKLE)
    identity = server.route(
        "/alice",
        200,
        {"Content-Type": "text/html"},
        f'<html><head><link rel="openid2.provider" href="{op.url("/op")}"></head></html>'.encode(),
    )
    rp = rp_with_budget(make_rp, fetch_user_timeout=1.0)
    auth = rp.begin(identity, "https://rp.example/finish", session={})
    assert auth.association is None
    assert op.connections == 1
    assert "fetch_user_timeout" in caplog.text
