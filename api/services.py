"""The wiring: builds every part from Settings and owns their life cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from eventsourcing.persistence import InfrastructureFactory
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.utils import Environment
from psycopg.sql import SQL, Identifier

from adapters import embedded_postgres, isolated_decoding, local_secrets, schema_lock
from adapters.audit_head import HEAD_FILE, HeadPublisher, KafkaHeadSender, head_key
from adapters.blob_store import EncryptedBlobStore
from adapters.event_store import (
    LEDGER_ENV,
    PostgresImaging,
    check_connection,
    connection_pool,
    master_key_from_env,
)
from adapters.kafka_connection import kafka_security
from adapters.kafka_consumer import TopicConsumer
from adapters.local_folder import LocalFolderBackend
from adapters.tile_reader import TileReader
from api.auth import TokenConfig
from api.settings import Settings, eventsourcing_env
from projections.albums import AlbumsProjection, AlbumsView
from projections.annotations import AnnotationsProjection, AnnotationsView
from projections.audit import AuditProjection, AuditView
from projections.capture_sessions import CaptureSessionsProjection, CaptureSessionsView
from projections.dicom_index import DicomIndexProjection, DicomIndexView
from projections.gallery import GalleryProjection, GalleryView
from projections.reports import ReportsProjection, ReportsView
from projections.saved_searches import SavedSearchesProjection, SavedSearchesView
from projections.search import SearchProjection, SearchView
from projections.simulations import SimulationsProjection, SimulationsView
from projections.treatment import TreatmentProjection, TreatmentView
from workers import (
    booking_consumer,
    cbct_assembly,
    crm_patients_consumer,
    derivatives,
    dicom_derivatives,
    kafka_relay,
    mesh_derivatives,
    milestone_consumer,
    report_renderer,
    simulations,
    tiles,
)
from workers.runner import WorkerRunner
from workers.supervisor import Supervisor

log = structlog.get_logger("orthovault.services")


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded server under the data directory."""
    if settings.database_url:
        return settings.database_url
    return embedded_postgres.start(settings.data_dir.resolve())


def token_config(settings: Settings, *, existing_key: bool = False) -> TokenConfig:
    """``existing_key``: the installation's key or NoInstallation, never a new key."""
    read_key = (local_secrets.existing_token_signing_key if existing_key
                else local_secrets.token_signing_key)
    secret = (
        settings.token_secret.get_secret_value()
        if settings.token_secret
        else read_key(settings.data_dir)
    )
    return TokenConfig(secret, settings.token_issuer, settings.token_audience,
                       settings.token_ttl_seconds, settings.token_max_lifetime_seconds)


def audit_head_path(settings: Settings) -> Path:
    return settings.data_dir / "secrets" / HEAD_FILE


def master_key(settings: Settings) -> str:
    if settings.master_key:
        return settings.master_key.get_secret_value()
    if settings.mode == "production":
        raise RuntimeError("ORTHOVAULT_MASTER_KEY must be set in production mode")
    return local_secrets.master_key(settings.data_dir)


def blob_backend(settings: Settings) -> Any:
    """S3 (or MinIO) when configured, else the local folder under the data directory."""
    if not settings.s3_endpoint:
        return LocalFolderBackend(Path(settings.blob_dir))
    from adapters.s3_backend import S3Backend

    return S3Backend(
        settings.s3_endpoint, settings.s3_access_key or "",
        settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else "",
        settings.s3_bucket, secure=settings.s3_secure, region=settings.s3_region,
        sse=settings.s3_sse, archive_bucket=settings.s3_archive_bucket,
    )


def tracking_recorder(env: dict[str, str], name: str, cls: type[Any]) -> Any:
    """A tracking recorder (or read-model view) with its own connection pool."""
    factory = InfrastructureFactory.construct(env=Environment(name, {**env, "CREATE_TABLE": "no"}))
    recorder = factory.tracking_recorder(cls)
    schema_lock.create_tables(recorder)
    return recorder


def shared_tracking(app: PostgresImaging, name: str, cls: type[Any]) -> Any:
    """A tracking recorder (or view) on the application's own pool: one pool per process
    for the log, every read model and every runner, instead of one pool each."""
    recorder = cls(datastore=app.recorder.datastore,
                   tracking_table_name=f"{name.lower()}_tracking")
    schema_lock.create_tables(recorder)
    return recorder


PROJECTIONS: tuple[tuple[type[Any], type[Any]], ...] = (
    (GalleryProjection, GalleryView),
    (CaptureSessionsProjection, CaptureSessionsView),
    (DicomIndexProjection, DicomIndexView),
    (AuditProjection, AuditView),
    (ReportsProjection, ReportsView),
    (SimulationsProjection, SimulationsView),
    (AnnotationsProjection, AnnotationsView),
    (AlbumsProjection, AlbumsView),
    (TreatmentProjection, TreatmentView),
    (SearchProjection, SearchView),
    (SavedSearchesProjection, SavedSearchesView),
)


# What each read model follows, for read-your-writes (see Services._last_followed).
VIEW_TOPICS: dict[type[Any], tuple[str, ...]] = {
    view: tuple(getattr(projection, "topics", ())) for projection, view in PROJECTIONS}
# How far back a write's own events may reach from its position (one command's events).
ONE_WRITE = 64


@dataclass
class Services:
    settings: Settings
    env: dict[str, str]
    app: PostgresImaging
    blobs: EncryptedBlobStore
    gallery: GalleryView
    audit: AuditView
    sessions: CaptureSessionsView
    dicom_index: DicomIndexView
    tokens: TokenConfig
    supervisor: Supervisor = field(default_factory=Supervisor)
    tile_reader: TileReader = field(init=False)

    def __post_init__(self) -> None:
        self.tile_reader = TileReader(self.blobs)
    reports: ReportsView = field(init=False)
    simulations: SimulationsView = field(init=False)
    annotations: AnnotationsView = field(init=False)
    albums: AlbumsView = field(init=False)
    treatment: TreatmentView = field(init=False)
    search: SearchView = field(init=False)
    saved_searches: SavedSearchesView = field(init=False)
    audit_head: HeadPublisher | None = field(init=False, default=None)

    @classmethod
    def build(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        isolated_decoding.configure(isolated_decoding.DecoderLimits(
            settings.decoder_processes, settings.decoder_memory_limit_mb,
            settings.decoder_timeout_seconds))
        env = eventsourcing_env(database_url(settings), master_key(settings))
        env[LEDGER_ENV] = str(settings.destruction_ledger_path)
        check_connection(env)
        app = PostgresImaging(env=env)
        blobs = EncryptedBlobStore(blob_backend(settings), app.key_store)
        gallery = shared_tracking(app, GalleryProjection.name, GalleryView)
        audit = shared_tracking(app, AuditProjection.name, AuditView)
        sessions = shared_tracking(app, CaptureSessionsProjection.name, CaptureSessionsView)
        dicom_index = shared_tracking(app, DicomIndexProjection.name, DicomIndexView)
        services = cls(settings=settings, env=env, app=app, blobs=blobs, gallery=gallery,
                       audit=audit, sessions=sessions, dicom_index=dicom_index,
                       tokens=token_config(settings))
        services.reports = shared_tracking(app, ReportsProjection.name, ReportsView)
        services.simulations = shared_tracking(app, SimulationsProjection.name,
                                                 SimulationsView)
        services.annotations = shared_tracking(app, AnnotationsProjection.name,
                                                 AnnotationsView)
        services.albums = shared_tracking(app, AlbumsProjection.name, AlbumsView)
        services.treatment = shared_tracking(app, TreatmentProjection.name, TreatmentView)
        services.search = shared_tracking(app, SearchProjection.name, SearchView)
        services.saved_searches = shared_tracking(app, SavedSearchesProjection.name,
                                                  SavedSearchesView)
        services._add_jobs()
        services.audit_head = services._audit_head_publisher()
        return services

    def _audit_head_publisher(self) -> HeadPublisher:
        """Publishes the audit chain's head outside the database (adapters/audit_head.py)."""
        send = (KafkaHeadSender(self.settings.kafka_bootstrap, kafka_security(self.settings))
                if self.settings.kafka_bootstrap else None)
        publisher = HeadPublisher(audit_head_path(self.settings),
                                  head_key(master_key_from_env(self.env)), send=send)
        self.audit.on_append = publisher.advance
        return publisher

    def _add_jobs(self) -> None:
        for projection, view in PROJECTIONS:
            self.supervisor.add(projection.name, self._projection_runner(projection, view))
        self.supervisor.add(derivatives.NAME, self._derivatives_runner)
        self.supervisor.add(tiles.NAME, self._tiles_runner)
        self.supervisor.add(dicom_derivatives.NAME, self._dicom_derivatives_runner)
        self.supervisor.add(cbct_assembly.NAME, self._cbct_assembly_runner)
        self.supervisor.add(mesh_derivatives.NAME, self._mesh_derivatives_runner)
        self.supervisor.add(report_renderer.NAME, self._report_renderer_runner)
        self.supervisor.add(simulations.NAME,
                            lambda: simulations.runner(self.app, self.blobs))
        if self.settings.kafka_bootstrap:
            self.supervisor.add(kafka_relay.NAME, self._relay)
            self.supervisor.add(booking_consumer.NAME, self._booking_consumer)
            self.supervisor.add(crm_patients_consumer.NAME, self._crm_patients_consumer)
            self.supervisor.add(milestone_consumer.NAME, self._milestone_consumer)
        self.supervisor.every(1.0, self.app.nudge_subscribers)
        from api.scale_out import lease_jobs  # imports this module

        lease_jobs(self)  # one process per projection / worker shard at a time

    def _projection_runner(self, projection: type[Any], view: type[Any]) -> Any:
        """Each projection runs on the shared application and writes through the same view
        object the API queries (exactly-once: row change and tracking in one transaction)."""
        shared = {GalleryView: self.gallery, AuditView: self.audit,
                  CaptureSessionsView: self.sessions, DicomIndexView: self.dicom_index,
                  ReportsView: self.reports, SimulationsView: self.simulations,
                  AnnotationsView: self.annotations, AlbumsView: self.albums,
                  TreatmentView: self.treatment, SearchView: self.search,
                  SavedSearchesView: self.saved_searches}[view]

        def start() -> WorkerRunner:
            instance = projection(view=shared)
            return WorkerRunner(self.app, shared, instance.process_event, instance.topics,
                                owns_tracking=False)

        return start

    def _topic_consumer(self, module: Any, group: str) -> TopicConsumer:
        return TopicConsumer(
            module.NAME, module.TOPIC, module.handler(self.app),
            self.settings.kafka_bootstrap or "", connection_pool(self.env, max_size=2),
            group_id=f"{self.settings.kafka_group_prefix}-{group}",
            max_poll_interval_ms=10_000, session_timeout_ms=6_000, heartbeat_interval_ms=1_000,
            # A topic created after the consumer joined is noticed within seconds.
            metadata_max_age_ms=5_000,
            **kafka_security(self.settings),
        )

    def _booking_consumer(self) -> Any:
        return self._topic_consumer(booking_consumer, "booking")

    def _milestone_consumer(self) -> Any:
        return self._topic_consumer(milestone_consumer, "treatment")

    def _crm_patients_consumer(self) -> Any:
        return self._topic_consumer(crm_patients_consumer, "crm")

    def _relay(self) -> Any:
        tracking = shared_tracking(self.app, kafka_relay.NAME, PostgresTrackingRecorder)
        return kafka_relay.KafkaRelay(self.app, tracking, self.settings.kafka_bootstrap or "",
                                      producer_config=kafka_security(self.settings))

    def _dicom_derivatives_runner(self) -> WorkerRunner:
        tracking = shared_tracking(self.app, dicom_derivatives.NAME, PostgresTrackingRecorder)
        worker = dicom_derivatives.DicomDerivativesWorker(self.app, self.blobs, tracking)
        return WorkerRunner(self.app, tracking, worker, dicom_derivatives.TOPICS)

    def _report_renderer_runner(self) -> WorkerRunner:
        tracking = shared_tracking(self.app, report_renderer.NAME, PostgresTrackingRecorder)
        worker = report_renderer.ReportRenderer(self.app, self.blobs, self.gallery,
                                                self.sessions, self.reports, tracking)
        return WorkerRunner(self.app, tracking, worker, report_renderer.TOPICS)

    def _tiles_runner(self) -> WorkerRunner:
        tracking = shared_tracking(self.app, tiles.NAME, PostgresTrackingRecorder)
        worker = tiles.TilesWorker(self.app, self.blobs, tracking)
        return WorkerRunner(self.app, tracking, worker, tiles.TOPICS)

    def _mesh_derivatives_runner(self) -> WorkerRunner:
        tracking = shared_tracking(self.app, mesh_derivatives.NAME, PostgresTrackingRecorder)
        worker = mesh_derivatives.MeshDerivativesWorker(self.app, self.blobs, tracking)
        return WorkerRunner(self.app, tracking, worker, mesh_derivatives.TOPICS)

    def _cbct_assembly_runner(self) -> cbct_assembly.CbctAssemblyRunner:
        view = shared_tracking(self.app, cbct_assembly.NAME, cbct_assembly.CbctSeriesView)
        assembler = cbct_assembly.CbctAssembler(self.app, self.blobs, view,
                                                self.settings.cbct_stable_seconds)
        return cbct_assembly.CbctAssemblyRunner(self.app, assembler)

    def _derivatives_runner(self) -> WorkerRunner:
        tracking = shared_tracking(self.app, derivatives.NAME, PostgresTrackingRecorder)
        worker = derivatives.DerivativesWorker(self.app, self.blobs, tracking)
        return WorkerRunner(self.app, tracking, worker, derivatives.TOPICS)

    def start_background(self, only: set[str] | None = None) -> None:
        """Start the projection runners and workers (all, or the named ones)."""
        if only is None and self.settings.in_process_jobs.strip() != "all":
            only = {n.strip() for n in self.settings.in_process_jobs.split(",") if n.strip()}
        if only is not None:
            self.supervisor.jobs = {n: j for n, j in self.supervisor.jobs.items() if n in only}
        if self.settings.run_background or only is not None:
            self.supervisor.start()

    def wait_for_read_models(self, position: int, *views: Any) -> bool:
        """Read-your-writes: block until ``views`` (default: the gallery and search) have
        applied the write at ``position``. False if they lag too far."""
        if position <= 0:
            return True
        try:
            # Search follows every gallery topic, so a write the gallery shows is findable.
            for view in views or (self.gallery, self.search):
                target = self._last_followed(position, view)
                if target is not None:
                    view.wait(self.app.name, target,
                              timeout=self.settings.read_your_writes_timeout)
        except TimeoutError:
            log.warning("read_your_writes_timeout", position=position)
            return False
        return True

    def _last_followed(self, position: int, view: Any) -> int | None:
        """The newest of the write's events that ``view`` follows (None: none of them).

        A view records only events of its own topics, so waiting for ``position`` itself
        would sit out the whole timeout whenever a command's last event is one the view
        does not show (a destruction certificate after a tombstone, say).
        """
        topics = VIEW_TOPICS.get(type(view))
        if not topics:
            return position  # a view we cannot map, or one that follows everything
        recorder = self.app.recorder
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT max(notification_id) AS last FROM {}.{} WHERE notification_id"
                    " BETWEEN %s AND %s AND topic = ANY(%s)").format(
                    Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)),
                (position - ONE_WRITE, position, list(topics)))
            row = curs.fetchone()
        return row["last"] if row else None

    def _let_audit_catch_up(self, timeout: float = 5.0) -> None:
        """At shutdown the audit first takes in every event already in the log, so a stopped
        installation verifies without a gap (``audit verify`` compares with the log)."""
        job = self.supervisor.jobs.get(AuditProjection.name)
        head = self.app.recorder.max_notification_id() if job and job.running else None
        if head:
            try:
                self.audit.wait(self.app.name, head, timeout=timeout)
            except TimeoutError:
                log.warning("audit_behind_at_shutdown", position=head)

    def close(self) -> None:
        self._let_audit_catch_up()
        self.supervisor.stop()
        if self.audit_head is not None:
            self.audit_head.close()  # the last head, after the projection stopped
        isolated_decoding.shutdown()  # no decoder child outlives the server
        self.app.close()
        self.gallery.datastore.close()
        self.audit.datastore.close()
        self.sessions.datastore.close()
        self.dicom_index.datastore.close()
        self.reports.datastore.close()
        self.simulations.datastore.close()
        self.annotations.datastore.close()
        self.albums.datastore.close()
        self.treatment.datastore.close()
        self.search.datastore.close()
        self.saved_searches.datastore.close()


