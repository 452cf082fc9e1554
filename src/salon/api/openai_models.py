"""The models of ``/v1/models``: every agent and team this gateway runs, then ``auto``."""

from __future__ import annotations

from typing import Any

from salon.api.context import ApiContext
from salon.api.server import ApiError

AUTO = "auto"


def _model(model_id: str, created: int, **extra: Any) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "salon", **extra}


def models_of(ctx: ApiContext, created: int) -> list[dict[str, Any]]:
    """Every hosted agent and team, then ``auto``."""
    models = [
        _model(m.agent_id, created, kind=m.kind, label=m.label, description=m.description)
        for m in ctx.roster.hosted()
    ]
    auto = "the routing chain picks the agent (X-Salon-Route says why)"
    models.append(_model(AUTO, created, kind="router", label="Auto", description=auto))
    return models


def unknown_model(ctx: ApiContext, model: str) -> ApiError:
    """404 ``model_not_found`` for ``model``, naming the known ones."""
    known = ", ".join([*(m.agent_id for m in ctx.roster.hosted()), AUTO])
    return ApiError("model_not_found", model=model, known=known)
