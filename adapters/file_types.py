"""What a file really is, from its first bytes, and whether that matches what it claims."""

from __future__ import annotations

from pathlib import PurePath

from domain.errors import UnsupportedMedia

SNIFF_BYTES = 512

_EXTENSIONS: dict[str, str] = {
    ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".jpe": "image/jpeg",
    ".png": "image/png",
    ".tif": "image/tiff", ".tiff": "image/tiff",
    ".webp": "image/webp",
    ".heic": "image/heic", ".heif": "image/heif",
    ".dcm": "application/dicom",
    ".pdf": "application/pdf",
    ".zip": "application/zip",
}

# Content types that say nothing about the bytes; they never count as a claim.
_VAGUE_TYPES = {"", "application/octet-stream", "binary/octet-stream"}

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif"}


def sniff(head: bytes) -> str | None:
    """The media type the bytes themselves announce, or None."""
    # First: a DICOM preamble may itself be a TIFF header (dual-format files).
    if head[128:132] == b"DICM":
        return "application/dicom"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/avif" if head[8:12] == b"avif" else "image/heic"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"PK\x03\x04"):
        return "application/zip"
    return None


def _same_family(a: str, b: str) -> bool:
    heif = {"image/heic", "image/heif", "image/avif"}
    return a == b or (a in heif and b in heif)


def check_claims(sniffed: str | None, filename: str, content_type: str) -> str:
    """The real media type, refusing files whose name or declared type says otherwise."""
    if sniffed is None:
        raise UnsupportedMedia(
            "unsupported_media_type", "the file's bytes are not an image type orthovault accepts"
        )
    claimed_by_name = _EXTENSIONS.get(PurePath(filename).suffix.lower())
    if claimed_by_name and not _same_family(claimed_by_name, sniffed):
        raise UnsupportedMedia(
            "media_type_mismatch",
            f"the file is named as {claimed_by_name} but its bytes are {sniffed}",
        )
    declared = content_type.split(";")[0].strip().lower()
    if declared not in _VAGUE_TYPES and not _same_family(declared, sniffed) and (
        declared.startswith("image/") or declared in _EXTENSIONS.values()
    ):
        raise UnsupportedMedia(
            "media_type_mismatch", f"declared as {declared} but the bytes are {sniffed}"
        )
    return sniffed
