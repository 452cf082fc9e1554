"""The A2A routes in the OpenAPI document (:mod:`salon.api.a2a`): each agent's card
and its JSON-RPC endpoint. The A2A payloads themselves are the A2A specification's
(protocol 1.0 and 0.3); they are described here only in outline."""

from __future__ import annotations

from salon.api.openapi_schemas import JSON

_AGENT = {
    "name": "agent_id",
    "in": "path",
    "required": True,
    "description": "The agent's id (A2A must be on for it: `api.a2a` or its `a2a:`).",
    "schema": {"type": "string"},
    "example": "coder",
}
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_OBJECT = {"type": "object"}


def _error(description: str) -> JSON:
    return {"description": description, "content": _ERROR}


_NOT_SERVED = _error("No such agent, or A2A is off for it (`not_found`).")
_UNAUTHORIZED = _error("No or wrong `Authorization: Bearer <token>` header (`unauthorized`).")
_BAD_HOST = _error("The `Host` header names another server (`bad_host`).")

A2A_PATHS: JSON = {
    "/a2a/{agent_id}/.well-known/agent-card.json": {
        "get": {
            "tags": ["a2a"],
            "summary": "The agent's A2A agent card (one skill, from its description)",
            "operationId": "a2aAgentCard",
            "parameters": [_AGENT],
            "responses": {
                "200": {
                    "description": "The agent card (A2A 1.0, with 0.3's `url` fields).",
                    "content": {"application/json": {"schema": _OBJECT}},
                },
                "401": _UNAUTHORIZED,
                "404": _NOT_SERVED,
                "421": _BAD_HOST,
            },
        }
    },
    "/a2a/{agent_id}": {
        "post": {
            "tags": ["a2a"],
            "summary": "A2A JSON-RPC: `SendMessage`, `SendStreamingMessage` (1.0), "
            "`message/send`, `message/stream` (0.3); each one API turn of the agent",
            "operationId": "a2aCall",
            "parameters": [_AGENT],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _OBJECT}},
            },
            "responses": {
                "200": {
                    "description": "A JSON-RPC response (an agent `Message`, or a JSON-RPC "
                    "error whose `data.code` is Salon's stable code), or for the streaming "
                    "methods server-sent events: a working `Task`, `artifactUpdate` chunks "
                    "and a final `statusUpdate`.",
                    "content": {
                        "application/json": {"schema": _OBJECT},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "401": _UNAUTHORIZED,
                "404": _NOT_SERVED,
                "413": _error("The body is over 1 MiB (`body_too_large`)."),
                "415": _error("The body was not sent as `application/json`."),
                "421": _BAD_HOST,
            },
        }
    },
}
