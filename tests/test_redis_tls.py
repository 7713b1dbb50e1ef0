"""``rediss://`` with a CA bundle: our clients and Celery's broker verify the server's certificate.

The test makes a CA and a server certificate (``cryptography``) and runs ``redis-server`` with
TLS only (``--port 0 --tls-port …``; Debian's redis-server is built with TLS).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port
from tests.pipeline_fixture import WorkerProcess, apply_env, axb_env
from tests.test_pipeline import expiration
from tests.waiting import redis_answers, wait_until
from worker.celery_app import celery_config
from worker.connections import redis_client
from worker.runtime import Runtime, get_runtime
from worker.settings import Settings

pytestmark = [pytest.mark.timeout(120)]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, name: str) -> tuple[Path, Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(directory: Path, ca_key: Any, ca_cert: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class TlsRedis:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca, ca_key, ca_cert = make_ca(directory, "test-ca")
        self.other_ca, _, _ = make_ca(directory, "other-ca")
        self.cert, self.key = make_server_cert(directory, ca_key, ca_cert)
        self.port = free_port()
        exe = shutil.which("redis-server")
        assert exe is not None
        self.proc = subprocess.Popen(
            [
                exe,
                "--port", "0",
                "--tls-port", str(self.port),
                "--bind", "127.0.0.1",
                "--tls-cert-file", str(self.cert),
                "--tls-key-file", str(self.key),
                "--tls-ca-cert-file", str(self.ca),
                "--tls-auth-clients", "no",
                "--save", "",
                "--dir", str(directory),
                "--loglevel", "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        probe = redis.Redis(port=self.port, ssl=True, ssl_ca_certs=str(self.ca), socket_timeout=1)
        wait_until(lambda: redis_answers(probe, self.proc), timeout=10)
        probe.close()

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def tls_redis() -> Iterator[TlsRedis]:
    with tempfile.TemporaryDirectory(prefix="axb-tls-") as d:
        server = TlsRedis(Path(d))
        try:
            yield server
        finally:
            server.stop()


def test_a_rediss_url_verifies_the_server_against_the_ca_bundle(tls_redis: TlsRedis) -> None:
    """AXB_REDIS_CA_FILE or ssl_ca_certs= in the URL: connects; another CA: refused."""
    by_setting = redis_client(Settings(redis_url=tls_redis.url, redis_ca_file=str(tls_redis.ca)))
    by_query = redis_client(Settings(redis_url=f"{tls_redis.url}?ssl_ca_certs={tls_redis.ca}"))
    wrong = redis_client(
        Settings(redis_url=tls_redis.url, redis_ca_file=str(tls_redis.other_ca), redis_retry_s=0)
    )
    try:
        assert by_setting.set("tls-probe", "1") and by_query.get("tls-probe") == b"1"
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            wrong.ping()
    finally:
        for c in (by_setting, by_query, wrong):
            c.close()


def test_the_broker_takes_the_same_tls_settings(tls_redis: TlsRedis) -> None:
    """kombu's broker_use_ssl and the result backend get the CA bundle; the URL loses the query."""
    conf = celery_config(Settings(redis_url=f"{tls_redis.url}?ssl_ca_certs={tls_redis.ca}"))
    assert conf["broker_url"] == tls_redis.url
    assert conf["broker_use_ssl"]["ssl_ca_certs"] == str(tls_redis.ca)
    assert conf["redis_backend_use_ssl"] == conf["broker_use_ssl"]


def test_a_bind_goes_through_a_worker_over_tls(
    pipeline: Runtime, tls_redis: TlsRedis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A real `axb worker` consumes over TLS and the producer records over TLS."""
    from worker import enqueue_bind

    apply_env(monkeypatch, {"AXB_REDIS_URL": tls_redis.url, "AXB_REDIS_CA_FILE": str(tls_redis.ca)})
    worker = WorkerProcess(axb_env(), "-c", "2", log_path=tmp_path / "w.log").start()
    try:
        handle = enqueue_bind(
            {
                "PoolKey": "FC100000001",
                "PhoneNoA": "13812345678",
                "PhoneNoB": "13987654321",
                "Expiration": expiration(),
                "OutId": f"tls-{tmp_path.name[-6:]}",
            }
        )
        res = handle.result(timeout=30)
        assert res.status == "succeeded", (tmp_path / "w.log").read_text()
    finally:
        worker.stop()
    assert get_runtime().redis.connection_pool.connection_kwargs["ssl_ca_certs"] == str(tls_redis.ca)


def test_a_plain_url_after_a_tls_one_clears_the_brokers_tls_options(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Reconfiguring the one Celery app from rediss:// to redis:// leaves no TLS option behind
    (a stale CA path made every later broker connection of the process fail)."""
    from worker.celery_app import app

    ca = tmp_path / "ca.pem"
    ca.write_text("not used: the options are only built")
    port = settings.redis_url.rsplit(":", 1)[1]
    apply_env(monkeypatch, {"AXB_REDIS_URL": f"rediss://127.0.0.1:{port}", "AXB_REDIS_CA_FILE": str(ca)})
    assert app.conf.broker_use_ssl and app.conf.broker_use_ssl["ssl_ca_certs"] == str(ca)
    monkeypatch.delenv("AXB_REDIS_CA_FILE")
    apply_env(monkeypatch, {"AXB_REDIS_URL": settings.redis_url})
    assert app.conf.broker_use_ssl is None and app.conf.redis_backend_use_ssl is None
