"""``orthovault dicom-listen``: the DICOM network listener for one clinic's modalities.

Stored objects are filed through ``api.dicom_ingest.ingest_dicom`` as a device actor of the
configured clinic, matched to patients by PatientID (a mismatch becomes a reconciliation
item). The device acts with the clinical-staff grant: it may capture, never delete.
The Modality Worklist is the clinic's open capture sessions (``api/dicom_worklist.py``).
"""

from __future__ import annotations

import hashlib
import io
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

import click

from adapters import dicom_status
from adapters.dimse_scp import DimseServer, StoreHandler, WorklistProvider
from api.dicom_ingest import ingest_dicom
from api.dicom_worklist import DEFAULT_MODALITIES, worklist_provider
from api.services import Services
from api.settings import Settings
from domain.values import Actor

DEVICE_ROLE = "clinical_staff"


def device_actor(clinic_id: str, ae_title: str) -> Actor:
    return Actor(user_id=f"dicom:{ae_title}", role=DEVICE_ROLE, clinic_id=clinic_id)


def store_handler(services: Services, actor: Actor) -> StoreHandler:
    """C-STORE → ingest, with no target patient: the PatientID decides (or reconciliation)."""

    def store(data: bytes) -> int:
        # A modality never reads back: no read-your-writes wait per image.
        ingest_dicom(services, actor, None, io.BytesIO(data), hashlib.sha256(data).hexdigest(),
                     filename="c-store.dcm", wait=False)
        # Filed, held for reconciliation or an identical resend: stored, as STOW says too.
        return dicom_status.SUCCESS

    return store


def build_server(services: Services, *, ae_title: str, clinic_id: str, host: str, port: int,
                 worklist: WorklistProvider | None = None,
                 modalities: Sequence[str] = DEFAULT_MODALITIES) -> DimseServer:
    """The listener; its worklist is the clinic's open capture sessions unless given."""
    actor = device_actor(clinic_id, ae_title)
    provider = worklist or worklist_provider(services, clinic_id, modalities)
    return DimseServer(ae_title, store_handler(services, actor), provider, host=host, port=port)


@click.command("dicom-listen")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Data directory (default ./var or ORTHOVAULT_DATA_DIR).")
@click.option("--ae-title", default="ORTHOVAULT", show_default=True,
              help="Our AE title; modalities must call it exactly.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 for modalities on the network).")
@click.option("--port", type=int, default=11112, show_default=True)
@click.option("--clinic", required=True, help="The clinic whose modalities send here.")
@click.option("--worklist-modality", "modalities", multiple=True,
              default=DEFAULT_MODALITIES, show_default=True,
              help="Modality each open capture session is offered for (repeatable).")
def dicom_listen(data_dir: Path | None, ae_title: str, host: str, port: int,
                 clinic: str, modalities: tuple[str, ...]) -> None:
    """Receive images from X-ray units and scanners (C-STORE), answer C-ECHO and the
    Modality Worklist (C-FIND)."""
    from api.observability import configure_logging

    settings = Settings(data_dir=data_dir) if data_dir is not None else Settings()
    configure_logging(settings.log_level)
    services = Services.build(settings)
    try:
        server = build_server(services, ae_title=ae_title, clinic_id=clinic, host=host,
                              port=port, modalities=modalities)
    except ValueError as error:
        services.close()
        raise click.BadParameter(str(error), param_hint="--ae-title") from None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    click.echo(f"orthovault: DICOM listener {ae_title} on {host}:{port} for clinic {clinic}",
               err=True)
    try:
        stop.wait()
    finally:
        server.stop()
        services.close()
