"""The OpenAPI 3.1 document of the gateway's HTTP server, served at ``/api/v1/openapi.json``.

One dict, put together here, describing every route the server has: admin
(``/api/v1/…``), OpenAI-compatible (``/v1/…``), health and metrics; the paths are
in :mod:`salon.api.openapi_paths`, the schemas they use in
:mod:`salon.api.openapi_schemas`. A test walks
it against the running server both ways (every route in it answers; every route
the server has is in it), so a route added without a line here fails the build.
"""

from __future__ import annotations

import copy

from salon import __version__
from salon.api.openapi_a2a import A2A_PATHS
from salon.api.openapi_approvals import APPROVAL_PATHS, APPROVAL_SCHEMAS
from salon.api.openapi_paths import PATHS
from salon.api.openapi_schemas import JSON, SCHEMAS

DOCUMENT: JSON = {
    "openapi": "3.1.0",
    "info": {
        "title": "Salon gateway",
        "version": __version__,
        "description": "Admin API, OpenAI-compatible API, health and metrics of one Salon "
        "gateway. Every route but `/healthz` and attachment links needs "
        "`Authorization: Bearer <token>` and a "
        "`Host` naming this server (or an `api.allowed_hosts` entry); request bodies are "
        "`application/json`. "
        'Errors are `{"error": {"code", "message", "type"}}` with a stable code.',
    },
    "tags": [
        {"name": "admin", "description": "What the `salon` CLI does, over HTTP."},
        {"name": "openai", "description": "OpenAI-compatible: agents as models."},
        {"name": "health", "description": "Liveness, readiness and metrics."},
        {"name": "backends", "description": "What http backends fetch: attachment links."},
        {"name": "a2a", "description": "Agents as A2A (Agent2Agent) agents."},
        {"name": "dashboard", "description": "The web dashboard: its page, login and data."},
    ],
    "security": [{"bearer": []}],
    "paths": {**PATHS, **APPROVAL_PATHS, **A2A_PATHS},
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The token in the variable `api.token_env` names, or "
                "(without one) the random token in `<data_dir>/api.json`.",
            }
        },
        "schemas": {**SCHEMAS, **APPROVAL_SCHEMAS},
    },
}


def document() -> JSON:
    """The document (a copy: callers may change it)."""
    return copy.deepcopy(DOCUMENT)
