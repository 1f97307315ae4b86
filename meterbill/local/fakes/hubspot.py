"""An in-process fake of HubSpot's CRM (objects v3 + associations v4) behind the SDK's HTTP boundary
(``meterbill/local/fakes/http.py``).

State follows HubSpot's: objects of any type with properties; ``batch/upsert`` by a unique
property creates or updates (never a second object with the same value); reads by id or by
``idProperty``; associations in both directions. HubSpot has no idempotency header: a repeated
create makes a second object, which is what the module must never let happen.
"""

from __future__ import annotations

import itertools
from typing import Any

from meterbill.local.fakes.http import Answer, FakeHTTP, Reply, Request

NOW = "2026-11-02T00:00:00.000Z"


class FakeHubSpot(FakeHTTP):
    token = "pat-na1-test-token"          # the one private-app token it accepts

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {}
        self.links: set[tuple[str, str, str, str]] = set()
        self._ids = itertools.count(1001)

    def error_body(self, status: int, message: str) -> Any:
        return {"status": "error", "message": message, "correlationId": "00000000-fake", "category": "FAKE"}

    # -- views for tests -----------------------------------------------------------------------------------

    def of(self, object_type: str) -> list[dict[str, Any]]:
        return list(self.objects.get(object_type, {}).values())

    def linked(self, from_type: str, from_id: str, to_type: str) -> set[str]:
        return {t for f, fid, tt, t in self.links if (f, fid, tt) == (from_type, from_id, to_type)}

    # -- the API -------------------------------------------------------------------------------------------

    def route(self, req: Request) -> Reply:
        if req.headers.get("Authorization", "") != f"Bearer {self.token}":
            raise Answer(401, self.error_body(401, "Authentication credentials not found"))
        seg = req.path.strip("/").split("/")
        if seg[:2] == ["crm", "v4"]:
            return self._associations(req, seg)
        if seg[:3] != ["crm", "v3", "objects"]:
            raise Answer(404, self.error_body(404, f"no route {req.path}"))
        kind, rest, m = seg[3], seg[4:], req.method
        table = self.objects.setdefault(kind, {})
        if rest == ["batch", "upsert"] and m == "POST":
            return 200, self._batch([self._upsert(kind, row) for row in req.body["inputs"]]), {}
        if rest == ["batch", "read"] and m == "POST":
            wanted = [i["id"] for i in req.body["inputs"]]
            return 200, self._batch([self._view(kind, i) for i in wanted if i in table]), {}
        if not rest and m == "POST":
            obj = self._new(kind, req.body["properties"])
            for assoc in req.body.get("associations") or []:
                self._link(kind, obj["id"], self._type_of(assoc["to"]["id"]), assoc["to"]["id"])
            return 201, obj, {}
        if len(rest) == 1 and m == "GET":
            found = self._find(kind, rest[0], req.query.get("idProperty"))
            return 200, self._view(kind, found), {}
        if len(rest) == 1 and m == "PATCH":
            found = self._find(kind, rest[0], req.query.get("idProperty"))
            table[found].update(req.body["properties"])
            return 200, self._view(kind, found), {}
        raise Answer(404, self.error_body(404, f"no route {m} {req.path}"))

    def _associations(self, req: Request, seg: list[str]) -> Reply:
        if seg[2] == "associations" and seg[-2:] == ["associate", "default"]:
            from_type, to_type = seg[3], seg[4]
            results = []
            for row in req.body["inputs"]:
                self._find(from_type, row["from"]["id"], None)
                self._find(to_type, row["to"]["id"], None)
                self._link(from_type, row["from"]["id"], to_type, row["to"]["id"])
                results.append({"from": {"id": row["from"]["id"]}, "to": {"id": row["to"]["id"]},
                                "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}})
            return 200, self._batch(results), {}
        if seg[2] == "objects" and req.method == "GET":
            from_type, from_id, to_type = seg[3], seg[4], seg[6]
            ids = sorted(self.linked(from_type, from_id, to_type))
            return 200, {"results": [{"toObjectId": int(i), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": None}]} for i in ids]}, {}
        raise Answer(404, self.error_body(404, f"no route {req.path}"))

    # -- behaviour -----------------------------------------------------------------------------------------

    def _batch(self, results: list[Any]) -> dict[str, Any]:
        return {"status": "COMPLETE", "results": results, "startedAt": NOW, "completedAt": NOW}

    def _new(self, kind: str, properties: dict[str, Any]) -> dict[str, Any]:
        obj_id = str(next(self._ids))
        self.objects.setdefault(kind, {})[obj_id] = dict(properties)
        return self._view(kind, obj_id)

    def _view(self, kind: str, obj_id: str, new: bool | None = None) -> dict[str, Any]:
        view = {"id": obj_id, "properties": dict(self.objects[kind][obj_id]), "createdAt": NOW, "updatedAt": NOW,
                "archived": False}
        if new is not None:
            view["new"] = new
        return view

    def _upsert(self, kind: str, row: dict[str, Any]) -> dict[str, Any]:
        key, value = row["idProperty"], row["id"]
        if row["properties"].get(key, value) != value:
            raise Answer(400, self.error_body(400, f"{key} in properties differs from the id"))
        table = self.objects.setdefault(kind, {})
        found = next((i for i, p in table.items() if p.get(key) == value), None)
        if found is None:
            created = self._new(kind, {**row["properties"], key: value})
            return {**created, "new": True}
        table[found].update(row["properties"])
        return self._view(kind, found, new=False)

    def _find(self, kind: str, key: str, id_property: str | None) -> str:
        table = self.objects.get(kind, {})
        if id_property:
            found = next((i for i, p in table.items() if p.get(id_property) == key), None)
        else:
            found = key if key in table else None
        if found is None:
            raise Answer(404, self.error_body(404, f"{kind} {key} not found"))
        return found

    def _type_of(self, obj_id: str) -> str:
        return next(kind for kind, table in self.objects.items() if obj_id in table)

    def _link(self, from_type: str, from_id: str, to_type: str, to_id: str) -> None:
        self.links |= {(from_type, from_id, to_type, to_id), (to_type, to_id, from_type, from_id)}
