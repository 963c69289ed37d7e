"""AES-GCM with per-subject data keys: sealing event state and streaming blob chunks.

Every ciphertext is bound to where it belongs through associated data (the subject id and
position), so a ciphertext copied onto another subject, event or chunk fails to open.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32


class DecryptionFailed(Exception):
    """The ciphertext was altered, or sealed under another key or context."""


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, sealed: bytes, associated_data: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated_data)
    except (InvalidTag, ValueError) as error:
        raise DecryptionFailed(str(error) or "authentication failed") from None


def chunk_associated_data(context: bytes, index: int, last: bool) -> bytes:
    """Binds a blob chunk to its blob, its place, and whether it ends the blob.

    The "last" flag stops truncation at a chunk boundary from going unnoticed.
    """
    return context + struct.pack(">Q?", index, last)
