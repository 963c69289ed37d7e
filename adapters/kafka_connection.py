"""How every Kafka client of ours connects: transport security, mapped in one place.

The relay's producer, the inbound topic consumers and any admin client all take these
keyword arguments, so a TLS setting can never apply to one client and be forgotten in
another. kafka-python's SSL context is TLS 1.2+ and verifies the broker's certificate
(chain and host name) by default; nothing here loosens that unless asked to explicitly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class KafkaTlsSettings(Protocol):
    """The part of ``api.settings.Settings`` this needs (adapters do not import api)."""

    @property
    def kafka_security_protocol(self) -> str: ...

    @property
    def kafka_ssl_cafile(self) -> Path | None: ...

    @property
    def kafka_ssl_certfile(self) -> Path | None: ...

    @property
    def kafka_ssl_keyfile(self) -> Path | None: ...

    @property
    def kafka_ssl_check_hostname(self) -> bool: ...


def _path(value: Path | None) -> str | None:
    return str(value) if value is not None else None


def kafka_security(settings: KafkaTlsSettings) -> dict[str, Any]:
    """KafkaProducer / KafkaConsumer / KafkaAdminClient keyword arguments for the link."""
    if settings.kafka_security_protocol == "PLAINTEXT":
        return {"security_protocol": "PLAINTEXT"}
    return {
        "security_protocol": settings.kafka_security_protocol,
        "ssl_cafile": _path(settings.kafka_ssl_cafile),  # None = the system's trusted CAs
        "ssl_certfile": _path(settings.kafka_ssl_certfile),
        "ssl_keyfile": _path(settings.kafka_ssl_keyfile),
        "ssl_check_hostname": settings.kafka_ssl_check_hostname,
    }
