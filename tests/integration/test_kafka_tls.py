"""Kafka over TLS: the relay's producer and the inbound consumers connect with the
``ORTHOVAULT_KAFKA_SECURITY_PROTOCOL``/``_SSL_*`` settings, and a broker whose certificate is
not trusted is refused.

Tansu 0.6 (our test broker) has no usable TLS listener (its ``--cert`` and ``--key`` flags
cannot be given together), so a small TLS terminator in front of the plaintext broker plays
the part of the broker's TLS listener. It is plumbing, not a mock: every Kafka request still
goes to the real broker, which advertises the terminator's address so that clients also
reconnect to partition leaders through TLS.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from adapters.cloudevents import TOPICS, parse_record
from adapters.kafka_connection import kafka_security
from api.app import create_app
from api.settings import Settings
from conftest import bearer, graphql, make_settings, register_patient, token_for, wait_until

from .conftest import TANSU, free_port, wait_for_port

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (certfile, keyfile)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / f"{name}.pem", folder / f"{name}-key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return certfile, keyfile


class TlsTerminator:
    """Accepts TLS 1.2+ on ``port`` and pipes the decrypted bytes to the broker's port."""

    def __init__(self, certfile: Path, keyfile: Path, upstream_port: int):
        self.port = free_port()
        self.upstream_port = upstream_port
        self.sessions = 0  # TLS sessions that completed their handshake
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._context.load_cert_chain(certfile, keyfile)
        self._loop = asyncio.new_event_loop()
        # Failed handshakes (the point of one test) are expected, not worth a traceback.
        self._loop.set_exception_handler(lambda _loop, _context: None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tls-terminator")
        self._server: asyncio.Server | None = None

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._session, HOST, self.port, ssl=self._context),
            self._loop).result(timeout=10)

    async def _session(self, client_in: asyncio.StreamReader,
                       client_out: asyncio.StreamWriter) -> None:
        self.sessions += 1
        try:
            broker_in, broker_out = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_out.close()
            return
        await asyncio.gather(self._pipe(client_in, broker_out),
                             self._pipe(broker_in, client_out))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(1 << 16):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            sink.close()

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A plaintext Tansu broker reachable only through TLS on the terminator's port."""
    certfile, keyfile = self_signed(tmp_path, "broker")
    broker_port = free_port()
    terminator = TlsTerminator(certfile, keyfile, broker_port)
    log = (tmp_path / "tansu.log").open("ab")
    broker = subprocess.Popen(
        [str(TANSU), "broker", "--listener-url", f"tcp://{HOST}:{broker_port}",
         "--advertised-listener-url", f"tcp://{HOST}:{terminator.port}",
         "--storage-engine", "memory://tansu/"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(broker_port)
        terminator.start()
        yield {"bootstrap": f"{HOST}:{terminator.port}", "cafile": certfile,
               "terminator": terminator, "folder": tmp_path}
    finally:
        terminator.stop()
        broker.kill()
        broker.wait(timeout=10)
        log.close()


def tls_settings(database_url: str, folder: Path, broker: dict[str, Any],
                 **overrides: Any) -> Settings:
    values = {"kafka_bootstrap": broker["bootstrap"], "kafka_security_protocol": "SSL",
              "kafka_ssl_cafile": broker["cafile"], **overrides}
    return make_settings(database_url, folder, **values)


def read_clinic_events(settings: Settings, clinic: str, wanted: int) -> list[Any]:
    """Our CloudEvents of one clinic, read over the same TLS settings the app uses."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap,
                             enable_auto_commit=False, **kafka_security(settings))
    try:
        partitions = [TopicPartition(topic, p) for topic in sorted(TOPICS.values())
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        found: list[Any] = []

        def more() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                found.extend(parse_record(r.headers, r.value) for r in records
                             if json.loads(r.value).get("clinic_id") == clinic)
            return len(found) >= wanted

        wait_until(more, timeout=30, interval=0)
        return found
    finally:
        consumer.close()


def send_booking(settings: Settings, clinic: str, patient_id: str) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap,
                             **kafka_security(settings))
    data = {"clinic_id": clinic, "patient_id": patient_id, "appointment_id": "APT-TLS",
            "chair": "2", "imaging": True, "milestone": "debond",
            "scheduled_at": datetime.now(UTC).isoformat()}
    headers = [("content-type", b"application/json")] + [
        (f"ce_{name}", value.encode()) for name, value in (
            ("specversion", "1.0"), ("id", f"tls-{uuid.uuid4().hex}"),
            ("source", "urn:suite:booking"), ("type", "booking.appointment.scheduled.v1"),
            ("subject", "APT-TLS"), ("time", datetime.now(UTC).isoformat()))]
    try:
        producer.send("booking.appointments", key=b"APT-TLS", value=json.dumps(data).encode(),
                      headers=headers).get(timeout=30)
    finally:
        producer.close()


DAY = """query($day: Date!){ captureSessions(day: $day){ appointmentId chair milestone } }"""


def test_relay_and_consumers_work_over_tls(database_factory, tmp_path, tls_broker):
    settings = tls_settings(database_factory(), tmp_path, tls_broker)
    clinic = f"clinic-tls-{uuid.uuid4().hex[:6]}"
    headers = bearer(token_for(settings, "clinical_staff", clinic))
    with TestClient(create_app(settings)) as client:
        patient_id = register_patient(client, headers)
        # Outbound: the relay's producer published the registration through TLS.
        events = read_clinic_events(settings, clinic, wanted=1)
        assert any(e.type.endswith("patient.registered.v1") for e in events), events
        # Inbound: the booking consumer reads through TLS and opens the capture session.
        send_booking(settings, clinic, patient_id)
        day = datetime.now(UTC).astimezone().date().isoformat()
        sessions = wait_until(lambda: graphql(client, headers, DAY, {"day": day})["data"][
            "captureSessions"], timeout=60)
        assert sessions == [{"appointmentId": "APT-TLS", "chair": "2", "milestone": "debond"}]
    assert tls_broker["terminator"].sessions > 0  # the traffic really went through TLS


def _produce(settings: Settings) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, max_block_ms=3000,
                             request_timeout_ms=3000, bootstrap_timeout_ms=3000,
                             **kafka_security(settings))
    try:
        producer.send("tls-probe", b"x").get(timeout=10)
    finally:
        producer.close(timeout=1)


class KafkaLog(logging.Handler):
    """What kafka-python logs, where an operator would read why the connection failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def kafka_log() -> Iterator[KafkaLog]:
    handler = KafkaLog()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_untrusted_broker_certificate_is_refused(database_factory, tmp_path, tls_broker,
                                                 kafka_log):
    wrong_ca, _ = self_signed(tmp_path, "some-other-ca")
    database = database_factory()
    _produce(tls_settings(database, tmp_path, tls_broker))  # the control: the right CA works
    assert not kafka_log.messages

    for cafile in (wrong_ca, None):  # another CA, or the system's CAs
        kafka_log.messages.clear()
        with pytest.raises(KafkaError):
            _produce(tls_settings(database, tmp_path, tls_broker, kafka_ssl_cafile=cafile))
        assert any("CERTIFICATE_VERIFY_FAILED" in m for m in kafka_log.messages), (
            kafka_log.messages)
    plaintext = make_settings(database, tmp_path, kafka_bootstrap=tls_broker["bootstrap"])
    with pytest.raises(KafkaError):
        _produce(plaintext)


def test_tls_files_without_ssl_protocol_are_refused_at_start(tmp_path):
    with pytest.raises(ValidationError, match="KAFKA_SECURITY_PROTOCOL is PLAINTEXT"):
        Settings(kafka_bootstrap="broker:9093", kafka_ssl_cafile=tmp_path / "ca.pem")
    with pytest.raises(ValidationError, match="needs ORTHOVAULT_KAFKA_SSL_CERTFILE"):
        Settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=tmp_path / "key.pem")
    assert kafka_security(Settings()) == {"security_protocol": "PLAINTEXT"}
    ssl_settings = Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=tmp_path / "ca.pem")
    assert kafka_security(ssl_settings) == {
        "security_protocol": "SSL", "ssl_cafile": str(tmp_path / "ca.pem"),
        "ssl_certfile": None, "ssl_keyfile": None, "ssl_check_hostname": True}
