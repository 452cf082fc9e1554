"""The OpenAPI paths and schemas of the approval routes (:mod:`salon.api.admin_approvals`)."""

from __future__ import annotations

from salon.api.openapi_schemas import JSON, STR, ref

_INT = {"type": "integer"}
_NULL_STR = {"type": ["string", "null"]}


def _json(schema: JSON, description: str) -> JSON:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_UNAUTHORIZED = _json(ref("Error"), "No or wrong bearer token (`unauthorized`).")
_ID = {
    "name": "approval_id",
    "in": "path",
    "required": True,
    "schema": STR,
    "example": "3f2a9c1b7d4e",
}


def _decide(verb: str, summary: str) -> JSON:
    return {
        "post": {
            "tags": ["admin"],
            "summary": summary,
            "operationId": f"{verb}Approval",
            "parameters": [_ID],
            "responses": {
                "200": _json(ref("Approval"), "The request as decided now."),
                "401": _UNAUTHORIZED,
                "404": _json(ref("Error"), "No such request (`approval_not_found`)."),
                "409": _json(
                    ref("Error"),
                    "Already answered (`approval_decided`), or approvals are not available "
                    "here (`approvals_off`).",
                ),
            },
        }
    }


APPROVAL_PATHS: JSON = {
    "/api/v1/approvals": {
        "get": {
            "tags": ["admin"],
            "summary": "Tool calls that wait for (or were decided by) a person's OK, newest first",
            "operationId": "listApprovals",
            "parameters": [
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"enum": ["pending", "approved", "denied", "timeout"]},
                },
                {"name": "limit", "in": "query", "schema": {**_INT, "minimum": 1, "maximum": 1000}},
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"approvals": {"type": "array", "items": ref("Approval")}},
                    },
                    "The requests.",
                ),
                "400": _json(ref("Error"), "A bad `state` or `limit` (`invalid_request`)."),
                "401": _UNAUTHORIZED,
            },
        }
    },
    "/api/v1/approvals/{approval_id}/approve": _decide(
        "approve", "Run the call (as an admin: the API token is one)"
    ),
    "/api/v1/approvals/{approval_id}/deny": _decide("deny", "Refuse the call"),
}

APPROVAL_SCHEMAS: JSON = {
    "Approval": {
        "type": "object",
        "properties": {
            "id": STR,
            "turn_id": STR,
            "agent_id": STR,
            "tool": {"type": "string", "description": "`delegate` or `server.tool`."},
            "arguments": {"type": "object"},
            "room_id": STR,
            "for_user": {**_NULL_STR, "description": "Who may approve (besides admins)."},
            "state": {"enum": ["pending", "approved", "denied", "timeout"]},
            "request_event_id": _NULL_STR,
            "decided_by": _NULL_STR,
            "reason": _NULL_STR,
            "created_at": _INT,
            "deadline_at": _INT,
            "decided_at": {"type": ["integer", "null"]},
            "ignored": {
                "type": "array",
                "description": "Answers that could not decide it: who, why, when (ms).",
                "items": {"type": "object"},
            },
        },
    }
}
