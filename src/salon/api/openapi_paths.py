"""The OpenAPI document's paths: every route the server has, with its answers.

Admin (``/api/v1/…``), OpenAI-compatible (``/v1/…``), health and metrics; the
schemas they name are in :mod:`salon.api.openapi_schemas`.
"""

from __future__ import annotations

from salon.api.openapi_dashboard import DASHBOARD_PATHS
from salon.api.openapi_schemas import JSON, STR, ref


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> JSON:
    return _json(ref("Error"), description)


def _body(schema_name: str, example: JSON) -> JSON:
    return {
        "required": True,
        "content": {"application/json": {"schema": ref(schema_name), "example": example}},
    }


UNAUTHORIZED = _error("No or wrong `Authorization: Bearer <token>` header (`unauthorized`).")
INVALID = _error(
    "The body or a parameter is not valid; the message names it (`invalid_request`), "
    "or the body is not JSON, nests too deep or has NaN or Infinity (`bad_json`)."
)
BAD_HOST = _error(
    "The `Host` header names neither this server nor an `api.allowed_hosts` entry (`bad_host`)."
)
UNSUPPORTED = _error("The body was not sent as `application/json` (`unsupported_media_type`).")
TOO_LARGE = _error("The body is over 1 MiB (`body_too_large`).")
HOMESERVER = _error("The homeserver does not answer (`homeserver_unavailable`).")

TURN_HEADERS: JSON = {
    "X-Salon-Agent": {"description": "The agent that answered.", "schema": STR},
    "X-Salon-Route": {
        "description": "With `model: auto`: why the routing chain chose it (`<reason>: <detail>`).",
        "schema": STR,
    },
    "X-Salon-Turn": {"description": "The turn's id in the ledger.", "schema": STR},
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
    "/v1/attachments/{token}": {
        "get": {
            "tags": ["backends"],
            "summary": "A file a person sent, by the short-lived link an http backend got",
            "description": "The signed token in the path is the credential (no bearer token);"
            " it names one file and expires after `attachments.link_ttl_s`.",
            "operationId": "attachment",
            "security": OPEN,
            "parameters": [
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "schema": STR,
                    "example": "x.y",
                }
            ],
            "responses": {
                "200": {
                    "description": "The file, with its mime type.",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "403": _error("An invalid or expired link (`link_invalid`)."),
                "421": BAD_HOST,
            },
        }
    },
    "/readyz": {
        "get": {
            "tags": ["health"],
            "summary": "Ready to serve: every loop running, store writable, homeserver answering",
            "operationId": "readyz",
            "responses": {
                "200": _json(ref("Readiness"), "Ready."),
                "401": UNAUTHORIZED,
                "503": _json(ref("Readiness"), "Not ready; `problems` says why."),
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
                "200": _json(ref("AgentList"), "The agents."),
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
                    "schema": STR,
                    "example": "echo",
                }
            ],
            "responses": {
                "200": _json(ref("Agent"), "The agent."),
                "401": UNAUTHORIZED,
                "404": _error("No such agent (`agent_not_found`)."),
            },
        }
    },
    "/api/v1/agents/spawn": {
        "post": {
            "tags": ["admin"],
            "summary": "Start a temporary session agent from an existing agent's config "
            "(`salon agent spawn`); it ends after `ttl_s`, or `idle_s` without a turn",
            "operationId": "spawnAgent",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["from", "ttl_s"],
                            "additionalProperties": False,
                            "properties": {
                                "from": STR,
                                "ttl_s": {"type": "number", "exclusiveMinimum": 0},
                                "idle_s": {"type": "number", "exclusiveMinimum": 0},
                                "name": STR,
                            },
                        },
                        "example": {"from": "echo", "ttl_s": 600},
                    }
                },
            },
            "responses": {
                "201": _json(ref("Agent"), "The session agent, running."),
                "400": INVALID,
                "401": UNAUTHORIZED,
                "404": _error("No such template agent (`agent_not_found`)."),
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
                "200": _json(ref("SendResult"), "Sent and answered (with `wait`)."),
                "202": _json(ref("SendResult"), "Sent (without `wait`)."),
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
                    "schema": STR,
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
                "200": _json(ref("RoomMessages"), "Oldest first."),
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
                    ref("DelegationOutcome"),
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
                "200": _json(ref("Status"), "The gateway's state."),
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
                "200": _json(ref("ModelList"), "The models."),
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
                {"name": "model", "in": "path", "required": True, "schema": STR, "example": "echo"}
            ],
            "responses": {
                "200": _json(ref("Model"), "The model."),
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
                    "schema": STR,
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
                        "application/json": {"schema": ref("ChatCompletion")},
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


def _guarded(paths: JSON) -> JSON:
    """Every closed operation may be refused for its ``Host``, and every one with a
    body for that body's type or size (:mod:`salon.api.guards`)."""
    for item in paths.values():
        for op in item.values():
            if op.get("security") == OPEN:
                continue
            op["responses"].setdefault("421", BAD_HOST)
            if "requestBody" in op:
                op["responses"].setdefault("413", TOO_LARGE)
                op["responses"].setdefault("415", UNSUPPORTED)
    return paths


PATHS.update(DASHBOARD_PATHS)
_guarded(PATHS)
