"""The OpenAPI 3.1 document of the gateway's HTTP server, served at ``/api/v1/openapi.json``.

One dict, built here, describing every route the server has: admin
(``/api/v1/…``), OpenAI-compatible (``/v1/…``), health and metrics. A test walks
it against the running server both ways (every route in it answers; every route
the server has is in it), so a route added without a line here fails the build.
"""

from __future__ import annotations

import copy
from typing import Any

from salon import __version__

JSON = dict[str, Any]


def _ref(name: str) -> JSON:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(_ref("Error"), description)


def _body(schema_name: str, example: JSON) -> JSON:
    return {
        "required": True,
        "content": {"application/json": {"schema": _ref(schema_name), "example": example}},
    }


_STR: JSON = {"type": "string"}
_NULL_STR: JSON = {"type": ["string", "null"]}
_BOOL: JSON = {"type": "boolean"}
_INT: JSON = {"type": "integer"}
_TIMEOUT: JSON = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 3600,
    "description": "How long to wait, in seconds.",
}

UNAUTHORIZED = _error("No or wrong `Authorization: Bearer <token>` header (`unauthorized`).")
INVALID = _error("The body or a parameter is not valid; the message names it (`invalid_request`).")
HOMESERVER = _error("The homeserver does not answer (`homeserver_unavailable`).")

SCHEMAS: JSON = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {
                        "type": "string",
                        "description": "Stable code from Salon's catalogue, e.g. agent_not_found.",
                    },
                    "message": _STR,
                    "type": _STR,
                },
            }
        },
    },
    "Agent": {
        "type": "object",
        "required": ["id", "kind", "label", "user_id", "room_alias", "status"],
        "properties": {
            "id": _STR,
            "kind": {"enum": ["agent", "team", "peer"]},
            "label": _STR,
            "description": _STR,
            "user_id": _STR,
            "room_alias": _STR,
            "room_id": _NULL_STR,
            "hosted": {**_BOOL, "description": "Whether this gateway runs it (not a peer's)."},
            "status": {
                "enum": ["online", "busy", "offline", "unknown"],
                "description": "From the agent's heartbeat; `unknown` if it could not be read.",
            },
            "last_beat_ms": {"type": ["integer", "null"]},
            "gateway": _NULL_STR,
            "status_error": _NULL_STR,
        },
    },
    "AgentList": {
        "type": "object",
        "required": ["agents"],
        "properties": {"agents": {"type": "array", "items": _ref("Agent")}},
    },
    "SendMessage": {
        "type": "object",
        "required": ["to", "text"],
        "additionalProperties": False,
        "properties": {
            "to": {**_STR, "description": "An agent id, or `lobby`."},
            "text": _STR,
            "wait": {**_BOOL, "default": False, "description": "Wait for the reply."},
            "timeout_s": {**_TIMEOUT, "default": 120},
        },
    },
    "Reply": {
        "type": "object",
        "required": ["agent", "state", "text"],
        "properties": {
            "agent": _STR,
            "state": {"enum": ["replied", "failed", "stopped"]},
            "event_id": _NULL_STR,
            "text": {**_NULL_STR, "description": "The reply's newest (edited) text."},
            "notice": {**_BOOL, "description": "An error or status line, not an answer."},
            "error": _NULL_STR,
        },
    },
    "SendResult": {
        "type": "object",
        "required": ["event_id", "room_id", "to"],
        "properties": {
            "event_id": _STR,
            "room_id": _STR,
            "to": _STR,
            "routed": {
                **_STR,
                "description": "With wait: why the message went where it did "
                "(`not routed` for a command, `dropped` if it was refused).",
            },
            "reply": {"oneOf": [_ref("Reply"), {"type": "null"}]},
            "replies": {"type": "array", "items": _ref("Reply")},
        },
    },
    "Message": {
        "type": "object",
        "required": ["event_id", "sender", "ts", "body"],
        "properties": {
            "event_id": _STR,
            "sender": _STR,
            "agent": {**_NULL_STR, "description": "The agent behind the sender, if any."},
            "ts": _INT,
            "body": _STR,
            "notice": _BOOL,
            "edited": _BOOL,
        },
    },
    "RoomMessages": {
        "type": "object",
        "required": ["room_id", "messages"],
        "properties": {
            "room_id": _STR,
            "messages": {"type": "array", "items": _ref("Message")},
        },
    },
    "Delegate": {
        "type": "object",
        "required": ["from", "to", "task"],
        "additionalProperties": False,
        "properties": {
            "from": {**_STR, "description": "An agent this gateway runs."},
            "to": _STR,
            "task": _STR,
            "context": _STR,
            "wait": {**_BOOL, "default": True},
            "timeout_s": {
                **_TIMEOUT,
                "description": "How long to wait (default: the delegation deadline + 10 s).",
            },
        },
    },
    "DelegationOutcome": {
        "type": "object",
        "required": ["ok", "text", "id"],
        "properties": {
            "ok": _BOOL,
            "text": {
                **_STR,
                "description": "The result, or an error such as `[OFFLINE] coder`; "
                "without wait, the delegation id.",
            },
            "id": _NULL_STR,
        },
    },
    "Loop": {
        "type": "object",
        "properties": {
            "name": _STR,
            "running": _BOOL,
            "restarts": _INT,
            "backing_off": _BOOL,
            "last_error": _NULL_STR,
        },
    },
    "Check": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": _BOOL, "error": _STR},
    },
    "Status": {
        "type": "object",
        "properties": {
            "gateway": _STR,
            "delegations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": _STR,
                        "from": _STR,
                        "to": _STR,
                        "state": {"enum": ["pending", "sent", "accepted", "progress"]},
                        "age_s": _INT,
                    },
                },
            },
            "turns_in_flight": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "event_id": _STR,
                        "agent": _STR,
                        "state": _NULL_STR,
                        "attempts": {"type": ["integer", "null"]},
                    },
                },
            },
            "loops": {"type": "array", "items": _ref("Loop")},
            "loops_restarting": {"type": "array", "items": _STR},
            "loops_ok": _BOOL,
            "store": _ref("Check"),
            "homeserver": _ref("Check"),
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["ready", "checks", "problems"],
        "properties": {
            "ready": _BOOL,
            "checks": {
                "type": "object",
                "properties": {
                    "loops": {
                        "type": "object",
                        "properties": {
                            "ok": _BOOL,
                            "failing": {"type": "array", "items": _ref("Loop")},
                        },
                    },
                    "store": _ref("Check"),
                    "homeserver": _ref("Check"),
                },
            },
            "problems": {"type": "array", "items": _STR},
        },
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant", "tool", "developer"]},
            "content": {"oneOf": [_STR, {"type": "array"}, {"type": "null"}]},
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {**_STR, "description": "An agent or team id, or `auto`."},
            "messages": {"type": "array", "items": _ref("ChatMessage"), "minItems": 1},
            "stream": {**_BOOL, "default": False},
            "user": {
                **_STR,
                "description": "Continue a durable session (as `X-Salon-Session` does).",
            },
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": _STR,
            "object": {"const": "chat.completion"},
            "created": _INT,
            "model": _STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": _INT,
                        "message": _ref("ChatMessage"),
                        "finish_reason": _NULL_STR,
                    },
                },
            },
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {**_STR, "description": "An agent or team id, or `auto`."},
            "object": {"const": "model"},
            "created": _INT,
            "owned_by": _STR,
            "kind": {"enum": ["agent", "team", "router"]},
            "label": _STR,
            "description": _STR,
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": _ref("Model")},
        },
    },
}

TURN_HEADERS: JSON = {
    "X-Salon-Agent": {"description": "The agent that answered.", "schema": _STR},
    "X-Salon-Route": {
        "description": "With `model: auto`: why the routing chain chose it (`<reason>: <detail>`).",
        "schema": _STR,
    },
    "X-Salon-Turn": {"description": "The turn's id in the ledger.", "schema": _STR},
}

OPEN: list[JSON] = []  # `security: []`: no token needed

PATHS: JSON = {
    "/healthz": {
        "get": {
            "tags": ["health"],
            "summary": "The process is alive (no token needed)",
            "operationId": "healthz",
            "security": OPEN,
            "responses": {
                "200": _json({"type": "object", "properties": {"ok": {"const": True}}}, "Alive.")
            },
        }
    },
    "/readyz": {
        "get": {
            "tags": ["health"],
            "summary": "Ready to serve: every loop running, store writable, homeserver answering",
            "operationId": "readyz",
            "responses": {
                "200": _json(_ref("Readiness"), "Ready."),
                "401": UNAUTHORIZED,
                "503": _json(_ref("Readiness"), "Not ready; `problems` says why."),
            },
        }
    },
    "/metrics": {
        "get": {
            "tags": ["health"],
            "summary": "Prometheus metrics (text format)",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                },
                "401": UNAUTHORIZED,
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "tags": ["admin"],
            "summary": "This document",
            "operationId": "openapi",
            "responses": {
                "200": _json({"type": "object"}, "The OpenAPI document."),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/api/v1/agents": {
        "get": {
            "tags": ["admin"],
            "summary": "Every agent, team and peer, with its heartbeat status (`salon who`)",
            "operationId": "listAgents",
            "responses": {
                "200": _json(_ref("AgentList"), "The agents."),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/api/v1/agents/{agent_id}": {
        "get": {
            "tags": ["admin"],
            "summary": "One agent",
            "operationId": "getAgent",
            "parameters": [
                {
                    "name": "agent_id",
                    "in": "path",
                    "required": True,
                    "schema": _STR,
                    "example": "echo",
                }
            ],
            "responses": {
                "200": _json(_ref("Agent"), "The agent."),
                "401": UNAUTHORIZED,
                "404": _error("No such agent (`agent_not_found`)."),
            },
        }
    },
    "/api/v1/messages": {
        "post": {
            "tags": ["admin"],
            "summary": "Post as the operator in an agent's room or the lobby; "
            "with `wait`, the reply (`salon send --to`)",
            "operationId": "sendMessage",
            "requestBody": _body("SendMessage", {"to": "echo", "text": "hello", "wait": True}),
            "responses": {
                "200": _json(_ref("SendResult"), "Sent and answered (with `wait`)."),
                "202": _json(_ref("SendResult"), "Sent (without `wait`)."),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "403": _error("The operator cannot post there (`operator_not_in_room`)."),
                "404": _error("No such agent (`agent_not_found`)."),
                "409": _error("No operator user is configured (`no_operator`)."),
                "503": HOMESERVER,
                "504": _error("No answer within `timeout_s` (`timeout`)."),
            },
        }
    },
    "/api/v1/rooms/{room}/messages": {
        "get": {
            "tags": ["admin"],
            "summary": "A room's newest messages, edits applied (`salon read`)",
            "operationId": "readRoom",
            "parameters": [
                {
                    "name": "room",
                    "in": "path",
                    "required": True,
                    "description": "`lobby`, an agent id, a room alias (`%23` for `#`) "
                    "or a room id.",
                    "schema": _STR,
                    "example": "lobby",
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20},
                },
            ],
            "responses": {
                "200": _json(_ref("RoomMessages"), "Oldest first."),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "403": _error("The gateway is not in that room (`room_forbidden`)."),
                "404": _error("No such room (`room_not_found`)."),
                "503": HOMESERVER,
            },
        }
    },
    "/api/v1/delegations": {
        "post": {
            "tags": ["admin"],
            "summary": "One agent delegates a task to another; the outcome (`salon delegate`)",
            "operationId": "delegate",
            "requestBody": _body(
                "Delegate", {"from": "echo", "to": "parrot", "task": "say hi", "wait": True}
            ),
            "responses": {
                "200": _json(
                    _ref("DelegationOutcome"),
                    "How it ended (a refusal, an offline target or a timeout is `ok: false`).",
                ),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "404": _error("No such agent (`agent_not_found`)."),
                "504": _error("No outcome within `timeout_s` (`timeout`); it goes on."),
            },
        }
    },
    "/api/v1/status": {
        "get": {
            "tags": ["admin"],
            "summary": "Open delegations, turns in flight, loops, store and homeserver "
            "(`salon status`)",
            "operationId": "status",
            "responses": {
                "200": _json(_ref("Status"), "The gateway's state."),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/v1/models": {
        "get": {
            "tags": ["openai"],
            "summary": "Every agent and team this gateway runs as a model, plus `auto`",
            "operationId": "listModels",
            "responses": {
                "200": _json(_ref("ModelList"), "The models."),
                "401": UNAUTHORIZED,
            },
        }
    },
    "/v1/models/{model}": {
        "get": {
            "tags": ["openai"],
            "summary": "One model",
            "operationId": "getModel",
            "parameters": [
                {"name": "model", "in": "path", "required": True, "schema": _STR, "example": "echo"}
            ],
            "responses": {
                "200": _json(_ref("Model"), "The model."),
                "401": UNAUTHORIZED,
                "404": _error("No such model (`model_not_found`)."),
            },
        }
    },
    "/v1/chat/completions": {
        "post": {
            "tags": ["openai"],
            "summary": "A turn of the agent named by `model` (OpenAI chat completions)",
            "operationId": "chatCompletions",
            "parameters": [
                {
                    "name": "X-Salon-Session",
                    "in": "header",
                    "required": False,
                    "description": "Continue the durable session `agent:<id>:api:<session>` "
                    "instead of a stateless turn (the `user` field does the same).",
                    "schema": _STR,
                }
            ],
            "requestBody": _body(
                "ChatCompletionRequest",
                {"model": "echo", "messages": [{"role": "user", "content": "hello"}]},
            ),
            "responses": {
                "200": {
                    "description": "The answer: a `chat.completion`, or with `stream: true` "
                    "`chat.completion.chunk` server-sent events ending in `data: [DONE]`.",
                    "headers": TURN_HEADERS,
                    "content": {
                        "application/json": {"schema": _ref("ChatCompletion")},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                "400": INVALID,
                "401": UNAUTHORIZED,
                "404": _error(
                    "No such model (`model_not_found`), or `auto` found no agent (`no_route`)."
                ),
                "502": _error("The agent's backend failed (`backend_error`)."),
                "504": _error("The turn ran out of time (`timeout`)."),
            },
        }
    },
}

DOCUMENT: JSON = {
    "openapi": "3.1.0",
    "info": {
        "title": "Salon gateway",
        "version": __version__,
        "description": "Admin API, OpenAI-compatible API, health and metrics of one Salon "
        "gateway. Every route but `/healthz` needs `Authorization: Bearer <token>`. "
        'Errors are `{"error": {"code", "message", "type"}}` with a stable code.',
    },
    "tags": [
        {"name": "admin", "description": "What the `salon` CLI does, over HTTP."},
        {"name": "openai", "description": "OpenAI-compatible: agents as models."},
        {"name": "health", "description": "Liveness, readiness and metrics."},
    ],
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in the variable `api.token_env` names.",
            }
        },
        "schemas": SCHEMAS,
    },
}


def document() -> JSON:
    """The document (a copy: callers may change it)."""
    return copy.deepcopy(DOCUMENT)
