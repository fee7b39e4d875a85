"""TLS to a real memcached started with ``-Z`` (Debian's build has it), with a certificate
authority made for the test: the store verifies the server's certificate and host name."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import MemcachedServer, new_prefix, start_server
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openid_plugins_memcached import MemcachedStore

from openid_plugins.contracts import StoreOptions
from openid_plugins.errors import StoreError

OP = "https://op.example/server"
FAST = "connect_timeout=1&timeout=1"


def _certificate(
    subject: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    public_key: ec.EllipticCurvePublicKey,
    issuer: str,
    *,
    ca: bool,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        builder = builder.add_extension(usage, critical=True)
    else:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls_files() -> Iterator[dict[str, Path]]:
    """A CA and a server certificate for 127.0.0.1, in a directory the ``memcache`` user
    can read (pytest's tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="memcached-tls-"))
    directory.chmod(0o755)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("test CA", ca_key, ca_key.public_key(), "test CA", ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate("127.0.0.1", ca_key, key.public_key(), "test CA", ca=False)
    files = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path in files.values():
        path.chmod(0o644)
    yield files
    shutil.rmtree(directory)


@pytest.fixture(scope="module")
def tls_server(tls_files: dict[str, Path]) -> Iterator[MemcachedServer]:
    server = start_server(
        "-Z", "-o", f"ssl_chain_cert={tls_files['cert']},ssl_key={tls_files['key']}"
    )
    yield server
    server.stop()


def test_store_over_tls(tls_server: MemcachedServer, tls_files: dict[str, Path], clock) -> None:
    url = (
        f"memcached://{tls_server.address}?tls=true&prefix={new_prefix()}"
        f"&tls_ca_file={tls_files['ca']}&{FAST}"
    )
    with MemcachedStore(url, StoreOptions(clock=clock)) as store:
        assert store.use_nonce(OP, clock.now(), "s") is True
        assert store.use_nonce(OP, clock.now(), "s") is False
        store.cache_set("ns", "k", {"v": 1}, 60)
        assert store.cache_get("ns", "k") == {"v": 1}


def test_untrusted_certificate_is_refused(tls_server: MemcachedServer, clock) -> None:
    """Without the test CA (system trust only) the server's certificate does not verify."""
    url = f"memcached://{tls_server.address}?tls=true&prefix={new_prefix()}&{FAST}"
    with MemcachedStore(url, StoreOptions(clock=clock)) as store, pytest.raises(
        StoreError, match="CERTIFICATE_VERIFY_FAILED"
    ):
        store.use_nonce(OP, clock.now(), "s")


def test_plain_text_to_a_tls_server_is_a_store_error(tls_server: MemcachedServer, clock) -> None:
    url = f"memcached://{tls_server.address}?prefix={new_prefix()}&{FAST}"
    with MemcachedStore(url, StoreOptions(clock=clock)) as store, pytest.raises(StoreError):
        store.use_nonce(OP, clock.now(), "s")
