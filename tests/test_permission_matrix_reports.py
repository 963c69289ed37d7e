"""Signed report links cannot be forged, altered or replayed after revocation (issue #11).

``GET /api/v1/report-links/{token}`` needs no sign-in, so the permission matrix can only
say "anyone holding a genuine link"; this module checks what makes a link genuine.
``tests/test_reports.py`` already covers a flipped signature, a truncated payload, garbage,
a server-signed link whose time is up and one plain revocation; the cases here are the
ones an attacker would actually try: re-signing with a guessed or reused key, editing the
claim (expiry, version, report, clinic, link id) under the original signature, reviving an
expired link, and replaying a revoked link however it is re-dated or re-signed.
Every refusal must also leave no download record.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from permission_matrix import reports_targets as t
from permission_matrix.spec import World

from conftest import graphql, stored_events
from domain import share_link
from domain.report import ReportDownload

REVOKE = """mutation($r: ID!, $l: String!){ revokeReportShare(reportId: $r, linkId: $l){
  shares { linkId revoked } } }"""


@pytest.fixture(scope="module")
def world(client: TestClient, shared_settings: Any) -> World:
    return World(client, shared_settings)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claim_of(url: str) -> tuple[dict[str, Any], str]:
    """The decoded claim of a link and its signature, as an attacker holding it sees them."""
    payload, signature = url.rsplit("/", 1)[1].split(".")
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))), signature


def _raw(claim: dict[str, Any]) -> bytes:
    return json.dumps(claim, separators=(",", ":"), sort_keys=True).encode()


def _encode(claim: dict[str, Any]) -> str:
    return _b64(_raw(claim))


def _signed_with(key: bytes, claim: dict[str, Any]) -> str:
    return f"{_encode(claim)}.{_b64(hmac.new(key, _raw(claim), hashlib.sha256).digest())}"


def _refused(client: TestClient, token: str) -> tuple[int, str]:
    response = client.get(f"/api/v1/report-links/{token}")
    assert response.status_code >= 400, token
    return response.status_code, response.json()["code"]


def _link_downloads(client: TestClient, link_id: str) -> int:
    return sum(1 for e in stored_events(client, ReportDownload.Recorded) if e.link_id == link_id)


def _server_signed(world: World, claim: dict[str, Any]) -> str:
    """A token the server itself would sign (its real key): only the report's state can
    refuse it."""
    return share_link.sign(share_link.LinkClaim(
        uuid.UUID(claim["r"]), int(claim["v"]), str(claim["l"]), str(claim["c"]),
        datetime.fromtimestamp(int(claim["e"]), UTC)), world.client.app.state.services
        .tokens.secret)


def test_a_link_signed_with_any_key_but_the_servers_is_refused(world: World) -> None:
    link = t.new_share(world)
    claim, signature = _claim_of(link["url"])
    assert world.client.get(link["url"]).status_code == 200  # the genuine one works
    secret = world.client.app.state.services.tokens.secret
    far = dict(claim, e=int((datetime.now(UTC) + timedelta(days=3650)).timestamp()))
    keys = [
        b"guessed-secret",
        secret.encode(),  # the bearer-token secret as-is: links use a key derived from it
        hashlib.sha256(b"orthovault report links v2|" + secret.encode()).digest(),
    ]
    for key in keys:
        for forged_claim in (claim, far):
            assert _refused(world.client, _signed_with(key, forged_claim)) == (
                404, "link_invalid")
    unsigned = _encode(far)
    for token in (unsigned, f"{unsigned}.", f".{signature}", f"{unsigned}.{unsigned}"):
        assert _refused(world.client, token) == (404, "link_invalid")
    assert _link_downloads(world.client, link["linkId"]) == 1


def test_an_edited_claim_under_its_original_signature_is_refused(world: World) -> None:
    link = t.new_share(world)
    claim, signature = _claim_of(link["url"])
    other_report = t.new_share(world)  # same report, another link id
    edits = [
        {"e": claim["e"] + 3650 * 86400},  # a longer life
        {"v": claim["v"] + 1},  # another version
        {"r": str(uuid.uuid4())},  # another report
        {"c": f"other-{world.clinic}"},  # another clinic
        {"l": other_report["linkId"]},  # a sibling link (it might be revoked later)
    ]
    for edit in edits:
        tampered = f"{_encode({**claim, **edit})}.{signature}"
        assert _refused(world.client, tampered) == (404, "link_invalid"), edit

    # An expired link cannot be revived by re-dating it.
    expired_claim = dict(claim, e=int((datetime.now(UTC) - timedelta(minutes=1)).timestamp()))
    expired = _server_signed(world, expired_claim)
    assert _refused(world.client, expired) == (410, "link_expired")
    _, expired_signature = expired.split(".")
    revived = f"{_encode(dict(expired_claim, e=claim['e']))}.{expired_signature}"
    assert _refused(world.client, revived) == (404, "link_invalid")
    assert _link_downloads(world.client, link["linkId"]) == 0


def test_a_claim_the_report_does_not_back_is_refused_even_when_server_signed(
        world: World) -> None:
    """The signature proves who wrote the claim, not that the report still backs it."""
    link = t.new_share(world)
    claim, _ = _claim_of(link["url"])
    for edit in ({"c": f"other-{world.clinic}"}, {"l": "0123456789abcdef"},
                 {"v": claim["v"] + 1}, {"r": str(uuid.uuid4())}):
        assert _refused(world.client, _server_signed(world, {**claim, **edit})) == (
            404, "link_invalid"), edit
    assert _link_downloads(world.client, link["linkId"]) == 0


def test_a_revoked_link_stays_refused_however_it_is_replayed(world: World) -> None:
    report_id = t.rendered_report(world)["id"]
    link = t.new_share(world)
    assert world.client.get(link["url"]).status_code == 200
    doctor = world.headers("doctor")
    revoked = graphql(world.client, doctor, REVOKE, {"r": report_id, "l": link["linkId"]})
    assert "errors" not in revoked, revoked

    token = link["url"].rsplit("/", 1)[1]
    for _ in range(3):  # the same URL replayed
        assert _refused(world.client, token) == (410, "link_revoked")
    # Revocation is the report's state, not the token's: re-signing the same link id with
    # a fresh expiry (as a leaked signing key would allow) does not bring it back.
    claim, _ = _claim_of(link["url"])
    redated = dict(claim, e=int((datetime.now(UTC) + timedelta(days=30)).timestamp()))
    assert _refused(world.client, _server_signed(world, redated)) == (410, "link_revoked")
    # Revoking again changes nothing; it never un-revokes.
    again = graphql(world.client, doctor, REVOKE, {"r": report_id, "l": link["linkId"]})
    shares = {s["linkId"]: s["revoked"] for s in again["data"]["revokeReportShare"]["shares"]}
    assert shares[link["linkId"]] is True
    # A new link to the same report works; the old one still does not.
    fresh = t.new_share(world)
    assert world.client.get(fresh["url"]).status_code == 200
    assert _refused(world.client, token) == (410, "link_revoked")
    assert _link_downloads(world.client, link["linkId"]) == 1  # only the one before revoking
