"""All configuration in one object, from ``ORTHOVAULT_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlparse

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORTHOVAULT_", extra="ignore")

    data_dir: Path = Field(default=Path("var"), description="Blobs, secrets, embedded Postgres.")
    database_url: str | None = Field(
        default=None, description="postgresql://… ; unset = embedded PostgreSQL in data_dir."
    )
    master_key: SecretStr | None = Field(
        default=None, description="Base64 32-byte key wrapping every subject key."
    )
    destruction_ledger: Path | None = Field(
        default=None, description="Append-only record of every destruction, read by restore; "
                                  "keep it apart from the data, like the master key. "
                                  "Unset = data_dir/secrets/destructions.jsonl.")
    token_secret: SecretStr | None = Field(
        default=None, description="HS256 key for bearer tokens; unset = data_dir secret."
    )
    token_issuer: str = "orthovault"  # noqa: S105 - a name, not a secret
    token_audience: str = "orthovault"  # noqa: S105 - a name, not a secret
    token_ttl_seconds: int = 12 * 3600
    token_max_lifetime_seconds: int = Field(default=24 * 3600, gt=0)
    mode: Literal["embedded", "production"] = "embedded"
    host: str = "127.0.0.1"
    port: int = 8000
    tls_certfile: Path | None = Field(
        default=None, description="PEM certificate (chain): `serve` then speaks TLS 1.2+ only.")
    tls_keyfile: Path | None = Field(default=None, description="PEM private key for it.")
    max_upload_bytes: int = 256 * 1024 * 1024
    rate_limit_requests: str = Field(
        default="3000/minute",
        description="Requests per caller (clinic + user, else client address); '' = off.")
    rate_limit_writes: str = Field(
        default="600/minute", description="REST/DICOMweb uploads per caller; '' = off.")
    rate_limit_failed_auth: str = Field(
        default="60/minute",
        description="Failed authentications per client address before it is refused.")
    max_image_pixels: int = 120_000_000
    decoder_processes: int = Field(
        default=2, ge=1, le=32,
        description="Child processes decoding DICOM pixel data (a crash kills only a child).")
    decoder_memory_limit_mb: int = Field(
        default=4096, ge=128,
        description="Address-space ceiling of each decoder child; beyond it: 413.")
    decoder_timeout_seconds: float = Field(
        default=120.0, gt=0, description="A decode running longer is killed: 422.")
    read_your_writes_timeout: float = 10.0
    cbct_stable_seconds: float = Field(
        default=30.0, description="A CT series with no new slice for this long is assembled."
    )
    run_background: bool = Field(
        default=True, description="Run projections and workers inside the API process."
    )
    in_process_jobs: str = Field(
        default="all",
        description="Which background jobs run in the API process: all, or a comma list.",
    )
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port[,…]; set = publish every event to Kafka."
    )
    kafka_group_prefix: str = Field(
        default="orthovault",
        description="Consumer groups are <prefix>-booking, -crm, -treatment; installations "
                    "sharing one broker need different prefixes.")
    kafka_security_protocol: Literal["PLAINTEXT", "SSL"] = Field(
        default="PLAINTEXT", description="SSL = every Kafka connection is TLS 1.2+, verified.")
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="PEM CA bundle the broker's certificate must chain to; "
                                  "unset = the system's trusted CAs.")
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="PEM client certificate, for brokers that require one.")
    kafka_ssl_keyfile: Path | None = Field(default=None, description="PEM key for it.")
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="The broker's certificate must name the host connected to.")
    s3_endpoint: str | None = Field(default=None, description="host:port; set = blobs on S3.")
    s3_access_key: str | None = None
    s3_secret_key: SecretStr | None = None
    s3_bucket: str = "orthovault"
    s3_secure: bool = True
    s3_region: str | None = None
    s3_sse: bool = False
    s3_archive_bucket: str | None = None
    worker_shards: int = Field(
        default=1, ge=1, le=64,
        description="Shards per pixel worker; processes of `orthovault worker` share them.",
    )
    log_level: str = "INFO"
    cors_origins: str | None = Field(
        default=None,
        description="Browser origins allowed to call the API (comma list, '*' = any); "
                    "unset = none in production, local dev origins (api/cors.py) embedded.")

    @model_validator(mode="after")
    def _kafka_tls_is_whole(self) -> Settings:
        """TLS files with PLAINTEXT would silently not be used; a key needs its certificate."""
        files = (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile)
        if self.kafka_security_protocol == "PLAINTEXT" and any(files):
            raise ValueError("ORTHOVAULT_KAFKA_SSL_* files are set but "
                             "ORTHOVAULT_KAFKA_SECURITY_PROTOCOL is PLAINTEXT; set it to SSL")
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("ORTHOVAULT_KAFKA_SSL_KEYFILE needs ORTHOVAULT_KAFKA_SSL_CERTFILE")
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def destruction_ledger_path(self) -> Path:
        return self.destruction_ledger or self.data_dir / "secrets" / "destructions.jsonl"


def eventsourcing_env(database_url: str, master_key: str) -> dict[str, str]:
    """The environment eventsourcing reads, derived from our own settings."""
    url = urlparse(database_url)
    query = parse_qs(url.query)
    host = query.get("host", [url.hostname or "127.0.0.1"])[0]
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": unquote(url.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(url.port or 5432),
        "POSTGRES_USER": unquote(url.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(url.password or ""),
        # One pool per process serves the log, every read model and every runner (see
        # api/services.py); connections are held only while used, LISTEN is shared.
        "POSTGRES_POOL_SIZE": "1",
        "POSTGRES_MAX_OVERFLOW": "15",
        # A pooled connection is checked before use, so after PostgreSQL restarts the
        # connections it dropped are replaced instead of failing one request each.
        "POSTGRES_PRE_PING": "true",
        "APPLICATION_RECORDER_TOPIC": "adapters.log_listener:SharedListenRecorder",
        "CREATE_TABLE": "true",
        "ORTHOVAULT_MASTER_KEY": master_key,
    }
