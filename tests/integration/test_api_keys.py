"""API keys over HTTP (the real app on moto): the Authorization scheme, listing and revoking keys."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.event_handler import HttpResolverLocal

from meterbill.api.app import build_app
from tests.integration.test_api import SECRETS, Api, error


@pytest.fixture
def api(container: Any) -> Api:
    for scope, secret in SECRETS.items():
        container.keys.create([scope], name=f"test {scope}", secret=secret)
    return Api(build_app(HttpResolverLocal, lambda: container), container)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_lower_case_bearer_scheme_is_accepted(api: Api, scheme: str) -> None:
    resp = api.get("/v1/meters", key=None, headers={"Authorization": f"{scheme} {SECRETS['read']}"})
    assert resp.status_code == 200, resp.text


def test_bearer_without_a_key_is_still_401(api: Api) -> None:
    assert error(api.get("/v1/meters", key=None, headers={"Authorization": "bearer "}), 401)["code"] == "unauthorized"


# -- GET /v1/api-keys, DELETE /v1/api-keys/{id} ----------------------------------------------
def test_listing_shows_every_key_without_secrets(api: Api, container: Any, ddb: Any) -> None:
    extra, _ = container.keys.create(["read"], name="reporting")
    resp = api.get("/v1/api-keys", params={"limit": 2})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    rows = list(page["data"])
    while page["next_cursor"]:
        page = api.ok("GET", "/v1/api-keys", params={"limit": 2, "cursor": page["next_cursor"]})
        rows += page["data"]
    assert sorted(r["name"] for r in rows) == ["reporting", "test admin", "test ingest", "test read"]
    for row in rows:
        assert set(row) == {"id", "name", "scopes", "created_at", "expires_at", "revoked_at", "last_used_at",
                            "status"}
        assert row["status"] == "active" and row["created_at"] == "2026-11-05T12:00:00Z"
    text = "".join(r.text for r in api.responses)
    items = ddb.scan(TableName="t-billing")["Items"]
    digests = [i["pk"]["S"][4:] for i in items if i["pk"]["S"].startswith("KEY#")]
    assert len(digests) == 4
    for secret in [*SECRETS.values(), extra]:
        assert secret not in text and secret[:12] not in text
    assert not any(d[:8] in text for d in digests)
    admin = next(r for r in rows if r["name"] == "test admin")
    assert admin["last_used_at"] == "2026-11-05T12:00:00Z"  # this very request


@pytest.mark.parametrize("path", ["/v1/api-keys", "/v1/api-keys/", "/V1/API-KEYS"])
def test_only_admin_keys_may_read_keys(api: Api, path: str) -> None:
    assert error(api.get(path, key="read"), 403)["code"] == "forbidden"
    assert error(api.get(path, key="ingest"), 403)["code"] == "forbidden"


def test_a_revoked_key_is_refused(api: Api, container: Any) -> None:
    secret, doc = container.keys.create(["read"], name="leaked")
    assert api.get("/v1/meters", key=secret).status_code == 200
    assert error(api.request("DELETE", f"/v1/api-keys/{doc['id']}", key="read"), 403)["code"] == "forbidden"
    revoked = api.ok("DELETE", f"/v1/api-keys/{doc['id']}")
    assert (revoked["id"], revoked["status"], revoked["revoked_at"]) == (doc["id"], "revoked", "2026-11-05T12:00:00Z")
    err = error(api.get("/v1/meters", key=secret), 401)
    assert err["code"] == "unauthorized" and "revoked" in err["message"]
    assert api.ok("DELETE", f"/v1/api-keys/{doc['id']}")["revoked_at"] == revoked["revoked_at"]
    listed = {r["id"]: r for r in api.ok("GET", "/v1/api-keys")["data"]}
    assert listed[doc["id"]]["status"] == "revoked"  # kept, for the record


def test_revoking_an_unknown_id_is_404(api: Api) -> None:
    assert error(api.request("DELETE", "/v1/api-keys/key_0123456789abcdef"), 404)["code"] == "not_found"
    # not a key id at all (here: a secret pasted by mistake): refused by the path grammar, never looked up
    err = error(api.request("DELETE", "/v1/api-keys/mbtest_admin_0123456789abcdef"), 400)
    assert err["field"] == "key_id" and "mbtest_admin" not in err["message"]


def test_an_expired_key_is_401(api: Api, container: Any, clock: Any) -> None:
    from datetime import timedelta

    secret, _ = container.keys.create(["read"], expires_at=clock.now + timedelta(hours=1))
    assert api.get("/v1/meters", key=secret).status_code == 200
    clock.advance(hours=1)
    assert "expired" in error(api.get("/v1/meters", key=secret), 401)["message"]


def test_keys_stored_before_ids_are_given_one(container: Any, ddb: Any) -> None:
    """A key item written by the previous code (no id, a prefix of the secret) is found by the
    migration, listed and revocable; it kept working all along."""
    from meterbill.services.keys import digest

    old = "mb_legacy_0123456789abcdefghij"
    ddb.put_item(TableName="t-billing", Item={
        "pk": {"S": f"KEY#{digest(old)}"}, "sk": {"S": "KEY"}, "name": {"S": "old"},
        "scopes": {"L": [{"S": "read"}]}, "created_at": {"S": "2026-01-01T00:00:00Z"}, "prefix": {"S": old[:7]}})
    container.keys.create(["admin"], name="new")
    container.keys.authorize(f"Bearer {old}", "read")
    assert [d["name"] for d in container.keys.list_keys()[0]] == ["new"]
    [done] = container.keys.assign_missing_ids()
    assert done["name"] == "old" and done["id"].startswith("key_")
    assert container.keys.assign_missing_ids() == []  # idempotent
    assert sorted(d["name"] for d in container.keys.list_keys()[0]) == ["new", "old"]
    item = ddb.get_item(TableName="t-billing", Key={"pk": {"S": f"KEY#{digest(old)}"}, "sk": {"S": "KEY"}})["Item"]
    assert "prefix" not in item  # no part of a secret stays stored
    container.keys.revoke(done["id"])
    with pytest.raises(Exception, match="revoked"):
        container.keys.authorize(f"Bearer {old}", "read")


# -- meterbill keys ... -------------------------------------------------------------------------
@pytest.fixture
def cli(container: Any, clock: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`meterbill keys …` in-process, on the test tables and the test clock."""
    import meterbill.bootstrap
    from meterbill import cli as cli_module

    real = meterbill.bootstrap.bootstrap
    monkeypatch.setenv("METERBILL_EVENTS_TABLE", "t-events")
    monkeypatch.setenv("METERBILL_BILLING_TABLE", "t-billing")
    monkeypatch.setattr(meterbill.bootstrap, "bootstrap", lambda: real(clock=clock))
    return cli_module.main


def run(cli: Any, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    import json

    code = cli(["keys", *argv, "--aws"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else None), err


def test_cli_create_list_revoke(cli: Any, capsys: pytest.CaptureFixture[str], container: Any) -> None:
    code, created, _ = run(cli, capsys, "create", "--scope", "ingest", "--name", "edge",
                           "--expires-at", "2027-01-01T00:00:00Z")
    assert code == 0 and created["id"].startswith("key_") and created["expires_at"] == "2027-01-01T00:00:00Z"
    code, rows, _ = run(cli, capsys, "list")
    assert code == 0 and [(r["id"], r["name"], r["status"]) for r in rows] == [(created["id"], "edge", "active")]
    assert created["key"] not in json_text(rows)
    code, revoked, _ = run(cli, capsys, "revoke", created["id"])
    assert code == 0 and revoked["status"] == "revoked"
    with pytest.raises(Exception, match="revoked"):
        container.keys.authorize(f"Bearer {created['key']}", "ingest")
    code, _, err = run(cli, capsys, "revoke", "key_ffffffffffffffff")
    assert code == 1 and "does not exist" in err
    code, _, err = run(cli, capsys, "create", "--scope", "read", "--expires-at", "2026-11-01T00:00:00Z")
    assert code == 1 and "expires_at" in err and "future" in err
    code, migrated, _ = run(cli, capsys, "migrate")
    assert code == 0 and migrated == {"assigned": []}


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)
