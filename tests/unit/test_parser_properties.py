"""Property-based tests of every parser that reads bytes a user sent.

Each must either parse or raise the project's own clear errors (``OrthovaultError`` with a
stable code, which the API turns into a 4xx); any other exception would be a 500. Inputs are
random bytes and, more usefully, valid samples from the corpus with random cuts, flipped
bytes and spliced garbage, so the parsers get past their first magic-number check.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import itertools
import zipfile
from collections.abc import AsyncIterator

import pytest
from corpus.build import (
    CorpusLimits,
    ascii_stl,
    binary_stl,
    dicom,
    jpeg_bomb,
    obj,
    ply,
    png_bomb,
    raster,
    tiff_bomb,
    webp_bomb,
    zip_cases,
    zip_of,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import dicom_codec, file_types, image_codec, mesh_codec
from api.batch_upload import FileResult, zip_members
from api.multipart_related import parse_related_type, receive_related
from api.multipart_stream import MAX_FIELD_BYTES, ReceivedFile, receive_form
from domain.errors import InvalidInput, OrthovaultError, TooLarge, UnsupportedMedia

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """A valid sample, then a few of: cut, flip bytes, splice random bytes, duplicate a run."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["cut", "flip", "splice", "repeat", "zero"]))
        if action == "cut":
            del data[at:]
        elif action == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif action == "splice":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif action == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 256))] * draw(st.integers(1, 8))
        else:
            end = at + draw(st.integers(1, 512))
            data[at:end] = bytes(len(data[at:end]))
    return bytes(data)


def _chunks(data: bytes, cuts: list[int]) -> AsyncIterator[bytes]:
    points = sorted({min(max(c, 0), len(data)) for c in cuts} | {0, len(data)})

    async def generate() -> AsyncIterator[bytes]:
        for start, end in itertools.pairwise(points):
            yield data[start:end]

    return generate()


# ---- multipart/form-data ---------------------------------------------------------------------

_token = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\;'),
                 min_size=1, max_size=12)


@st.composite
def form_bodies(draw: st.DrawFn) -> tuple[bytes, bytes, dict[str, str], dict[str, bytes]]:
    boundary = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=4, max_size=40))
    fields = draw(st.dictionaries(_token, st.text(max_size=40).filter(
        lambda v: "\r" not in v), max_size=4))
    files = draw(st.dictionaries(_token, st.binary(max_size=2000), max_size=3))
    body = b""
    for name, value in fields.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                 ).encode() + value.encode() + b"\r\n"
    for name, content in files.items():
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f-{name}\"; "
                 f"filename=\"{name}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 ).encode() + content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return boundary.encode(), body, fields, files


@FUZZ
@given(form_bodies(), st.lists(st.integers(0, 10_000), max_size=8))
def test_well_formed_forms_parse_the_same_however_they_are_chunked(case, cuts) -> None:
    boundary, body, fields, files = case
    form = asyncio.run(receive_form(f"multipart/form-data; boundary={boundary.decode()}",
                                    _chunks(body, cuts), max_bytes=10**7, spool_dir=None))
    try:
        assert form.fields == fields
        got = {f.field_name[2:]: (f.handle.read(), f.sha256, f.size) for f in form.files}
        assert got == {name: (content, hashlib.sha256(content).hexdigest(), len(content))
                       for name, content in files.items()}
    finally:
        form.close()


@FUZZ
@given(form_bodies(), st.data(),
       st.lists(st.integers(0, 10_000), max_size=6), st.integers(50, 5_000))
def test_broken_forms_fail_only_with_clear_errors(case, data, cuts, limit) -> None:
    boundary, body, _, _ = case
    broken = data.draw(mutated([body]))
    content_type = data.draw(st.sampled_from([
        f"multipart/form-data; boundary={boundary.decode()}", "multipart/form-data",
        "multipart/form-data; boundary=", "text/plain", "", "multipart/form-data; boundary=\x00",
    ]))
    try:
        form = asyncio.run(receive_form(content_type, _chunks(broken, cuts), max_bytes=limit,
                                        spool_dir=None))
    except (InvalidInput, TooLarge):
        return
    form.close()
    assert all(len(v.encode()) <= MAX_FIELD_BYTES * 4 for v in form.fields.values())


# ---- multipart/related (STOW-RS) -------------------------------------------------------------


@FUZZ
@given(st.text(st.characters(max_codepoint=255), max_size=120))  # headers are latin-1
def test_related_content_types_fail_only_with_clear_errors(content_type: str) -> None:
    with contextlib.suppress(UnsupportedMedia, InvalidInput):
        parse_related_type(content_type)


@FUZZ
@given(st.data(), st.lists(st.binary(max_size=800), min_size=1, max_size=4),
       st.lists(st.integers(0, 5_000), max_size=6))
def test_related_bodies_parse_or_fail_clearly(data, parts, cuts) -> None:
    boundary = "b0undary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p
                    + b"\r\n" for p in parts) + f"--{boundary}--\r\n".encode()
    if data.draw(st.booleans()):
        body = data.draw(mutated([body]))
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    try:
        received = asyncio.run(receive_related(content_type, _chunks(body, cuts),
                                               max_bytes=4_000))
    except (InvalidInput, TooLarge, UnsupportedMedia):
        return
    for part in received:
        part.handle.close()


# ---- sniffing and claims ----------------------------------------------------------------------

SAMPLES = {fmt: raster(fmt, 48, 32, seed=i) for i, fmt in enumerate(
    ["jpeg", "png", "tiff", "webp", "heic"])}


@FUZZ
@given(st.one_of(st.binary(max_size=600), mutated(list(SAMPLES.values()))),
       st.text(max_size=40), st.text(max_size=60))
def test_sniffing_and_claims_never_crash(head: bytes, filename: str, content_type: str) -> None:
    sniffed = file_types.sniff(head)
    assert sniffed is None or "/" in sniffed
    try:
        assert file_types.check_claims(sniffed, filename, content_type) == sniffed
    except UnsupportedMedia as error:
        assert error.code in ("unsupported_media_type", "media_type_mismatch")


# ---- raster probe -----------------------------------------------------------------------------


@FUZZ
@given(mutated(list(SAMPLES.values())))
def test_raster_probe_decodes_or_refuses(data: bytes) -> None:
    try:
        probe = image_codec.probe(io.BytesIO(data), max_pixels=1_000_000)
    except OrthovaultError as error:
        assert error.code in ("corrupt_image", "image_too_many_pixels")
        return
    assert 0 < probe.width * probe.height <= 1_000_000
    assert isinstance(image_codec.camera_metadata(io.BytesIO(data)), dict)


@FUZZ
@given(st.one_of(mutated(list(SAMPLES.values())), st.sampled_from(
    [png_bomb(), jpeg_bomb(), tiff_bomb(), webp_bomb()])))
def test_guidance_frames_decode_or_refuse(data: bytes) -> None:
    from api.capture_guidance import _frame

    try:
        frame = _frame(data)
    except OrthovaultError as error:
        assert error.code in ("corrupt_image", "frame_too_large", "empty_file")
        return
    assert frame.mode == "RGB"


# ---- DICOM ----------------------------------------------------------------------------------

DICOM_SAMPLES = [dicom(), dicom(StudyDescription="x" * 300)]


@FUZZ
@given(mutated(DICOM_SAMPLES))
def test_dicom_reads_and_renders_or_refuses(data: bytes) -> None:
    try:
        dicom_codec.read_dicom(data)
        pixels = dicom_codec.render_dicom(data, max_pixels=1_000_000)
    except OrthovaultError as error:
        assert error.code.startswith("dicom_")
        return
    assert pixels.size > 0


# ---- meshes ----------------------------------------------------------------------------------

MESH_SAMPLES = [binary_stl(), ascii_stl(), ply(), obj()]


@FUZZ
@given(mutated(MESH_SAMPLES), st.sampled_from(["s.stl", "s.ply", "s.obj", "scan", "x.jpg"]))
def test_meshes_load_or_refuse(data: bytes, filename: str) -> None:
    try:
        mesh = mesh_codec.load_mesh(data, filename, max_faces=10_000)
    except OrthovaultError as error:
        assert error.code.startswith("mesh_")
        return
    assert mesh.stats is not None


# ---- zip batches -----------------------------------------------------------------------------

ZIP_SAMPLES = [
    zip_of([("IV01_a.jpg", SAMPLES["jpeg"]), ("b.png", SAMPLES["png"])]),
    zip_of([("IV01_a.jpg", SAMPLES["jpeg"])], zipfile.ZIP_STORED),
    zip_of([("dir/c.jpg", b"\x00" * 50_000)]),
]


@FUZZ
@given(mutated(ZIP_SAMPLES), st.integers(1, 200_000))
def test_zip_members_are_spooled_or_rejected(data: bytes, limit: int) -> None:
    received = ReceivedFile(field_name="files", filename="batch.zip", content_type="",
                            handle=io.BytesIO(data), size=len(data))
    results = zip_members(received, limit)
    for item in results:
        if isinstance(item, FileResult):
            assert item.status == "rejected" and item.code
        else:
            assert item.size <= limit
            item.handle.close()


@pytest.mark.parametrize("bad", zip_cases(CorpusLimits()), ids=lambda bad: bad.case)
def test_every_corpus_zip_is_handled_without_crashing(bad) -> None:
    received = ReceivedFile(field_name="files", filename="many.zip", content_type="",
                            handle=io.BytesIO(bad.data), size=len(bad.data))
    results = zip_members(received, CorpusLimits().max_upload_bytes)
    rejected = {(r.filename, r.code) for r in results if isinstance(r, FileResult)}
    expected = {(name, code) for name, (status, code) in bad.outcomes.items()
                if status == "rejected" and code in (
                    "unsafe_path", "zip_too_many_members", "zip_member_too_large",
                    "corrupt_zip", "zip_member_encrypted")}
    assert expected <= rejected
    for item in results:
        if isinstance(item, ReceivedFile):
            item.handle.close()


@pytest.mark.parametrize("name", ["../x.jpg", "/x.jpg", "C:/x.jpg", "a/../../x.jpg",
                                  "..\\x.jpg"])
def test_zip_paths_that_leave_the_archive_are_rejected(name: str) -> None:
    data = zip_of([(name, SAMPLES["jpeg"])])
    received = ReceivedFile(field_name="files", filename="batch.zip", content_type="",
                            handle=io.BytesIO(data), size=len(data))
    [result] = zip_members(received, 10**6)
    assert isinstance(result, FileResult) and result.code == "unsafe_path"
