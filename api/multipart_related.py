"""multipart/related bodies (RFC 2387), as DICOMweb sends and expects them.

Incoming (STOW-RS): each part streams into an anonymous temp file, hashed and counted while it
arrives; the whole body is refused the moment it crosses the size limit. Outgoing (WADO-RS):
parts are yielded chunk by chunk so a study is never held in memory.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from domain.errors import InvalidInput, TooLarge, UnsupportedMedia

MAX_PARTS = 1000


@dataclass
class RelatedPart:
    content_type: str
    handle: IO[bytes]
    size: int = 0
    sha256: str = ""
    _hasher: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)


@dataclass(frozen=True)
class RelatedType:
    """``multipart/related; type="…"`` split into the root type and its boundary."""

    root_type: str
    boundary: bytes | None


def parse_related_type(content_type: str) -> RelatedType:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/related":
        raise UnsupportedMedia("dicomweb_unsupported_media_type",
                               "send the instances as multipart/related; type=application/dicom")
    root = options.get(b"type", b"").decode("latin-1").strip().lower()
    boundary = options.get(b"boundary")
    return RelatedType(root, boundary or None)


async def receive_related(
    content_type: str, chunks: AsyncIterator[bytes], *, max_bytes: int
) -> list[RelatedPart]:
    related = parse_related_type(content_type)
    if related.boundary is None:
        raise InvalidInput("invalid_multipart", "the multipart body names no boundary")
    parts: list[RelatedPart] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        if len(parts) >= MAX_PARTS:
            raise InvalidInput("too_many_parts", f"at most {MAX_PARTS} instances per request")
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).strip().lower()] = bytes(header_value).strip()
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        declared = headers.get(b"content-type", b"").decode("latin-1")
        parts.append(RelatedPart(
            content_type=declared or related.root_type,
            handle=tempfile.TemporaryFile(),  # noqa: SIM115 - closed by close_parts
        ))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        piece = data[start:end]
        part = parts[-1]
        part.handle.write(piece)
        part.size += len(piece)
        part._hasher.update(piece)

    def on_part_end() -> None:
        part = parts[-1]
        part.sha256 = part._hasher.hexdigest()
        part.handle.flush()
        part.handle.seek(0)

    parts_ended: list[bool] = []  # the closing boundary was seen
    parser = MultipartParser(related.boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_end": lambda: parts_ended.append(True),
    })
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_bytes:
                raise TooLarge("upload_too_large", f"requests are limited to {max_bytes} bytes")
            parser.write(chunk)
        parser.finalize()
    except (InvalidInput, TooLarge):
        close_parts(parts)
        raise
    except Exception:
        close_parts(parts)
        raise InvalidInput("invalid_multipart", "the multipart body is malformed") from None
    if not parts or not parts_ended or any(not p.sha256 for p in parts):
        close_parts(parts)
        raise InvalidInput("invalid_multipart", "the multipart body holds no complete part")
    return parts


def close_parts(parts: Iterable[RelatedPart]) -> None:
    for part in parts:
        part.handle.close()


def new_boundary() -> str:
    return f"orthovault-{secrets.token_hex(12)}"


def related_content_type(part_type: str, boundary: str) -> str:
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


def encode_related(
    parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str
) -> Iterator[bytes]:
    """Yield a multipart/related body from (content type, chunks) pairs, lazily."""
    marker = f"--{boundary}".encode()
    for content_type, chunks in parts:
        yield marker + b"\r\nContent-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
        yield from chunks
        yield b"\r\n"
    yield marker + b"--\r\n"
