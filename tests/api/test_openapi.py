"""The OpenAPI document matches the server: both ways, and with the token where it says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.openapi_walk import app_routes, operations, walk
from tests.api.rig import AUTH, TOKEN, ApiRig, rig_and_client

from salon.api.openapi import document

Client = TestClient[Any, Any]


@pytest.fixture
async def rc(tmp_path: Path) -> AsyncIterator[tuple[ApiRig, Client]]:
    async for pair in rig_and_client(tmp_path):
        yield pair


async def test_the_document_is_served_and_is_openapi_3_1(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    response = await client.get("/api/v1/openapi.json", headers=AUTH)
    assert response.status == 200
    doc = await response.json()
    assert doc == document()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    # Every $ref points at a schema that exists.
    schemas = doc["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref


async def test_every_route_of_the_app_is_in_the_document(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    assert isinstance(client.server, TestServer)
    served = app_routes(client.server.app)
    documented = operations(document())
    assert served - documented == set(), "routes missing from the OpenAPI document"
    assert documented - served == set(), "documented routes the app does not have"


async def test_every_documented_operation_answers(rc: tuple[ApiRig, Client]) -> None:
    _, client = rc
    base = str(client.server.make_url("")).rstrip("/")
    wrong = await walk(
        client.session, base, document(), TOKEN, {"agent_id": "coder", "model": "coder"}
    )
    assert wrong == []
