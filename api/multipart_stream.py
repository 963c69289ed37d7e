"""Streams a multipart/form-data upload to an anonymous temp file, hashing as it goes.

The request body is never held in memory and an over-limit upload is refused the moment
it crosses the limit, not after it has all arrived. The temp file has no name on disk
(O_TMPFILE-style), so a crash leaves no plaintext behind.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from adapters.local_folder import DISK_FULL
from domain.errors import InvalidInput, StorageFull, TooLarge

MAX_FIELD_BYTES = 8 * 1024
MAX_PARTS = 64


@dataclass
class ReceivedFile:
    field_name: str
    filename: str
    content_type: str
    handle: IO[bytes]
    size: int = 0
    sha256: str = ""

    def head(self, count: int) -> bytes:
        self.handle.seek(0)
        data = self.handle.read(count)
        self.handle.seek(0)
        return data


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: list[ReceivedFile] = field(default_factory=list)

    def close(self) -> None:
        for received in self.files:
            received.handle.close()


def _disposition(headers: dict[bytes, bytes]) -> tuple[str, str | None]:
    _, options = parse_options_header(headers.get(b"content-disposition", b""))
    name = options.get(b"name", b"").decode("utf-8", "replace")
    filename = options.get(b"filename")
    return name, filename.decode("utf-8", "replace") if filename is not None else None


async def receive_form(
    content_type: str, chunks: AsyncIterator[bytes], *, max_bytes: int, spool_dir: str | None
) -> ReceivedForm:
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput("invalid_request", "send the image as multipart/form-data")
    form = ReceivedForm()
    state: dict[str, object] = {"headers": {}, "field": None, "value": bytearray()}
    header_field = bytearray()
    header_value = bytearray()
    hashers: dict[int, hashlib._Hash] = {}

    def on_part_begin() -> None:
        if len(form.fields) + len(form.files) >= MAX_PARTS:
            raise InvalidInput("invalid_request", f"at most {MAX_PARTS} form parts")
        state["headers"] = {}
        state["value"] = bytearray()
        state["file"] = None

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = state["headers"]
        assert isinstance(headers, dict)
        name, filename = _disposition(headers)
        state["field"] = name
        if filename is not None:
            received = ReceivedFile(
                field_name=name, filename=filename,
                content_type=headers.get(b"content-type", b"").decode("latin-1"),
                handle=tempfile.TemporaryFile(dir=spool_dir),  # noqa: SIM115 - closed by form
            )
            form.files.append(received)
            hashers[id(received)] = hashlib.sha256()
            state["file"] = received

    def on_part_data(data: bytes, start: int, end: int) -> None:
        received = state.get("file")
        piece = data[start:end]
        if isinstance(received, ReceivedFile):
            received.handle.write(piece)
            received.size += len(piece)
            hashers[id(received)].update(piece)
        else:
            value = state["value"]
            assert isinstance(value, bytearray)
            if len(value) + len(piece) > MAX_FIELD_BYTES:
                raise InvalidInput("field_too_long", f"form fields are at most {MAX_FIELD_BYTES} B")
            value.extend(piece)

    def on_end() -> None:
        state["ended"] = True  # the closing boundary was seen

    def on_part_end() -> None:
        received = state.get("file")
        if isinstance(received, ReceivedFile):
            received.sha256 = hashers[id(received)].hexdigest()
            received.handle.flush()
            received.handle.seek(0)
        else:
            value = state["value"]
            assert isinstance(value, bytearray)
            form.fields[str(state["field"])] = value.decode("utf-8", "replace")

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin, "on_part_data": on_part_data,
            "on_part_end": on_part_end, "on_header_field": on_header_field,
            "on_header_value": on_header_value, "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished, "on_end": on_end,
        },
    )
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge("upload_too_large", f"uploads are limited to {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
        if not state.get("ended"):
            # A body cut short (no closing boundary) may hold a truncated file: keep nothing.
            raise InvalidInput("invalid_multipart",
                               "the multipart body ends without its closing boundary")
    except (InvalidInput, TooLarge):
        form.close()
        raise
    except OSError as error:
        form.close()
        if error.errno in DISK_FULL:  # the spool's disk, not the client's bytes
            raise StorageFull("storage_full", "no space left to receive the upload") from None
        raise InvalidInput("invalid_multipart", "the multipart body is malformed") from None
    except Exception:
        form.close()
        raise InvalidInput("invalid_multipart", "the multipart body is malformed") from None
    return form
