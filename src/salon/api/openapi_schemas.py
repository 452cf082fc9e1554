"""The OpenAPI document's components: every schema a route's body or answer uses.

Also the small schema pieces the paths (:mod:`salon.api.openapi_paths`) share.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def ref(name: str) -> JSON:
    """A reference to the schema ``name`` of the components."""
    return {"$ref": f"#/components/schemas/{name}"}


STR: JSON = {"type": "string"}
NULL_STR: JSON = {"type": ["string", "null"]}
BOOL: JSON = {"type": "boolean"}
INT: JSON = {"type": "integer"}
TIMEOUT: JSON = {
    "type": "number",
    "exclusiveMinimum": 0,
    "maximum": 3600,
    "description": "How long to wait, in seconds.",
}

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
                    "message": STR,
                    "type": STR,
                },
            }
        },
    },
    "Agent": {
        "type": "object",
        "required": ["id", "kind", "label", "user_id", "room_alias", "status"],
        "properties": {
            "id": STR,
            "kind": {"enum": ["agent", "team", "peer"]},
            "label": STR,
            "description": STR,
            "user_id": STR,
            "room_alias": STR,
            "room_id": NULL_STR,
            "hosted": {**BOOL, "description": "Whether this gateway runs it (not a peer's)."},
            "status": {
                "enum": ["online", "busy", "offline", "unknown"],
                "description": "From the agent's heartbeat; `unknown` if it could not be read.",
            },
            "last_beat_ms": {"type": ["integer", "null"]},
            "gateway": NULL_STR,
            "status_error": NULL_STR,
        },
    },
    "AgentList": {
        "type": "object",
        "required": ["agents"],
        "properties": {"agents": {"type": "array", "items": ref("Agent")}},
    },
    "SendMessage": {
        "type": "object",
        "required": ["to", "text"],
        "additionalProperties": False,
        "properties": {
            "to": {**STR, "description": "An agent id, or `lobby`."},
            "text": STR,
            "wait": {**BOOL, "default": False, "description": "Wait for the reply."},
            "timeout_s": {**TIMEOUT, "default": 120},
        },
    },
    "Reply": {
        "type": "object",
        "required": ["agent", "state", "text"],
        "properties": {
            "agent": STR,
            "state": {"enum": ["replied", "failed", "stopped"]},
            "event_id": NULL_STR,
            "text": {**NULL_STR, "description": "The reply's newest (edited) text."},
            "notice": {**BOOL, "description": "An error or status line, not an answer."},
            "error": NULL_STR,
        },
    },
    "SendResult": {
        "type": "object",
        "required": ["event_id", "room_id", "to"],
        "properties": {
            "event_id": STR,
            "room_id": STR,
            "to": STR,
            "routed": {
                **STR,
                "description": "With wait: why the message went where it did "
                "(`not routed` for a command, `dropped` if it was refused).",
            },
            "reply": {"oneOf": [ref("Reply"), {"type": "null"}]},
            "replies": {"type": "array", "items": ref("Reply")},
        },
    },
    "Message": {
        "type": "object",
        "required": ["event_id", "sender", "ts", "body"],
        "properties": {
            "event_id": STR,
            "sender": STR,
            "agent": {**NULL_STR, "description": "The agent behind the sender, if any."},
            "ts": INT,
            "body": STR,
            "notice": BOOL,
            "edited": BOOL,
        },
    },
    "RoomMessages": {
        "type": "object",
        "required": ["room_id", "messages"],
        "properties": {
            "room_id": STR,
            "messages": {"type": "array", "items": ref("Message")},
        },
    },
    "Delegate": {
        "type": "object",
        "required": ["from", "to", "task"],
        "additionalProperties": False,
        "properties": {
            "from": {**STR, "description": "An agent this gateway runs."},
            "to": STR,
            "task": STR,
            "context": STR,
            "wait": {**BOOL, "default": True},
            "timeout_s": {
                **TIMEOUT,
                "description": "How long to wait (default: the delegation deadline + 10 s).",
            },
        },
    },
    "DelegationOutcome": {
        "type": "object",
        "required": ["ok", "text", "id"],
        "properties": {
            "ok": BOOL,
            "text": {
                **STR,
                "description": "The result, or an error such as `[OFFLINE] coder`; "
                "without wait, the delegation id.",
            },
            "id": NULL_STR,
        },
    },
    "Loop": {
        "type": "object",
        "properties": {
            "name": STR,
            "running": BOOL,
            "restarts": INT,
            "backing_off": BOOL,
            "last_error": NULL_STR,
        },
    },
    "Device": {
        "type": "object",
        "description": "An identity's end-to-end encryption device.",
        "properties": {
            "identity": STR,
            "device_id": STR,
            "one_time_keys": {**INT, "description": "One-time keys the homeserver holds"},
            "undecryptable_waiting": {**INT, "description": "Events waiting for a room key"},
            "decryption_failures": {**INT, "description": "Events given up on since start"},
        },
    },
    "Check": {
        "type": "object",
        "required": ["ok"],
        "properties": {"ok": BOOL, "error": STR},
    },
    "Status": {
        "type": "object",
        "properties": {
            "gateway": STR,
            "delegations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": STR,
                        "from": STR,
                        "to": STR,
                        "state": {"enum": ["pending", "sent", "accepted", "progress"]},
                        "age_s": INT,
                    },
                },
            },
            "turns_in_flight": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "event_id": STR,
                        "agent": STR,
                        "state": NULL_STR,
                        "attempts": {"type": ["integer", "null"]},
                    },
                },
            },
            "loops": {"type": "array", "items": ref("Loop")},
            "loops_restarting": {"type": "array", "items": STR},
            "loops_ok": BOOL,
            "store": ref("Check"),
            "store_size_bytes": {**INT, "description": "The store's size on disk (file + WAL)"},
            "homeserver": ref("Check"),
            "encryption": {"type": "array", "items": ref("Device")},
            "appservice_set_aside": {
                "type": "array",
                "description": "Parked appservice transactions given up on (`salon appservice"
                " retry` makes them due again).",
                "items": {
                    "type": "object",
                    "properties": {
                        "txn_id": STR,
                        "seq": {"type": ["integer", "null"]},
                        "tries": INT,
                        "reason": NULL_STR,
                        "set_aside_at": INT,
                    },
                },
            },
        },
    },
    "Readiness": {
        "type": "object",
        "required": ["ready", "checks", "problems"],
        "properties": {
            "ready": BOOL,
            "checks": {
                "type": "object",
                "properties": {
                    "loops": {
                        "type": "object",
                        "properties": {
                            "ok": BOOL,
                            "failing": {"type": "array", "items": ref("Loop")},
                        },
                    },
                    "store": ref("Check"),
                    "homeserver": ref("Check"),
                },
            },
            "problems": {"type": "array", "items": STR},
        },
    },
    "ChatMessage": {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": ["system", "user", "assistant", "tool", "developer"]},
            "content": {"oneOf": [STR, {"type": "array"}, {"type": "null"}]},
        },
    },
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {**STR, "description": "An agent or team id, or `auto`."},
            "messages": {"type": "array", "items": ref("ChatMessage"), "minItems": 1},
            "stream": {**BOOL, "default": False},
            "user": {
                **STR,
                "description": "Continue a durable session (as `X-Salon-Session` does).",
            },
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": STR,
            "object": {"const": "chat.completion"},
            "created": INT,
            "model": STR,
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "index": INT,
                        "message": ref("ChatMessage"),
                        "finish_reason": NULL_STR,
                    },
                },
            },
        },
    },
    "Model": {
        "type": "object",
        "required": ["id", "object"],
        "properties": {
            "id": {**STR, "description": "An agent or team id, or `auto`."},
            "object": {"const": "model"},
            "created": INT,
            "owned_by": STR,
            "kind": {"enum": ["agent", "team", "router"]},
            "label": STR,
            "description": STR,
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": ref("Model")},
        },
    },
}
