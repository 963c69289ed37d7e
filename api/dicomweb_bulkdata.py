"""Bulk data of stored instances: the BulkDataURIs /metadata hands out and what they name.

A URI is the instance's URL + ``/bulkdata/`` + the element's path: its tag, and inside
sequences ``<sequence tag>/<item index>/<tag>`` (e.g. ``00880200/0/7FE00010`` for an icon's
pixels). Binary values longer than :data:`INLINE_LIMIT` bytes and the Pixel Data always go
by URI, so metadata stays small and a viewer fetches pixels only when it needs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pydicom
from pydicom.dataelem import DataElement

from domain.errors import NotFound

INLINE_LIMIT = 1024  # bytes of a binary value still sent inline (base64) in the metadata
PIXEL_DATA = "7FE00010"
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN", "OB or OW", "US or OW"})


def _paths(ds: pydicom.Dataset, prefix: str = "") -> Iterator[tuple[int, str]]:
    for elem in ds:
        path = f"{prefix}{elem.tag:08X}"
        if elem.VR == "SQ":
            for index, item in enumerate(elem.value):
                yield from _paths(item, f"{path}/{index}/")
        else:
            yield id(elem), path


def uri_handler(ds: pydicom.Dataset, base: str) -> Callable[[DataElement], str]:
    """pydicom's ``bulk_data_element_handler`` for ``ds``, naming elements by their path."""
    paths = dict(_paths(ds))

    def handler(elem: DataElement) -> str:
        return f"{base}/{paths.get(id(elem), f'{elem.tag:08X}')}"

    return handler


def json_threshold() -> int:
    """``to_json_dict``'s threshold counts base64 characters (4 per 3 bytes)."""
    return INLINE_LIMIT * 4 // 3


def pixel_data_vr(ds: pydicom.Dataset, encapsulated: bool) -> str:
    return "OB" if encapsulated or int(ds.get("BitsAllocated", 16) or 16) <= 8 else "OW"


def element_at(ds: pydicom.Dataset, path: str) -> DataElement:
    """The binary element a bulkdata path names; 404 for anything else."""
    parts = path.strip("/").split("/")
    missing = NotFound("bulkdata_not_found", "no bulk data at this path")
    current: pydicom.Dataset = ds
    try:
        for step in range(0, len(parts) - 1, 2):
            current = current[int(parts[step], 16)].value[int(parts[step + 1])]
        elem = current[int(parts[-1], 16)] if len(parts) % 2 == 1 else None
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise missing from None
    if elem is None or elem.VR not in _BINARY_VRS or not isinstance(elem.value, bytes):
        raise missing
    return elem
