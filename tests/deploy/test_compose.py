"""deploy/compose.yaml: every service hardened, with a health check; no inline secrets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|API_KEY", re.IGNORECASE)


def services() -> dict[str, dict[str, Any]]:
    # safe_load resolves the `<<: *hardened` merges as compose does.
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data["services"]


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_is_hardened(name: str) -> None:
    service = services()[name]
    assert service.get("security_opt") == ["no-new-privileges:true"], name
    assert service.get("cap_drop") == ["ALL"], name
    assert not service.get("cap_add"), name
    assert service.get("init") is True, name
    assert service.get("read_only") is True, name
    assert not service.get("privileged"), name
    assert str(service.get("user", "")).split(":")[0] not in ("root", "0"), name


@pytest.mark.parametrize("name", sorted(services()))
def test_every_service_has_a_healthcheck(name: str) -> None:
    check = services()[name].get("healthcheck") or {}
    assert not check.get("disable"), name
    test = check.get("test")
    assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name


@pytest.mark.parametrize("name", sorted(services()))
def test_no_secret_is_written_inline(name: str) -> None:
    environment = services()[name].get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    inline = [key for key, value in environment.items() if SECRET_NAME.search(key) and value]
    assert not inline, f"{name}: secrets belong in an env_file (0600), not {inline}"


def test_salon_is_built_from_the_dockerfile_and_waits_for_a_healthy_synapse() -> None:
    salon = services()["salon"]
    build = salon["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    assert salon["env_file"] == ["salon.env"]
    assert salon["depends_on"]["synapse"]["condition"] == "service_healthy"
    assert salon["healthcheck"]["test"][1:] == [
        "/opt/salon/bin/python",
        "/opt/salon/healthcheck.py",
    ]
    assert any(volume.endswith(":/data") for volume in salon["volumes"])
    assert "synapse" in services()


def test_the_env_example_holds_no_values_for_secrets() -> None:
    for line in (DEPLOY / "salon.env.example").read_text().splitlines():
        if line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        if SECRET_NAME.search(key):
            assert value == "", f"salon.env.example gives {key} a value"


def test_salon_stores_in_the_compose_postgresql_once_it_is_healthy() -> None:
    salon, postgres = services()["salon"], services()["postgres"]
    assert salon["depends_on"]["postgres"]["condition"] == "service_healthy"
    url = salon["environment"]["SALON_STORE_URL"]
    assert url.startswith("postgresql://salon@postgres:5432/") and ":" not in url.split("@")[0][13:]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert postgres["env_file"] == ["postgres.env"]
    assert "postgres-data" in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["volumes"]
    # The password lives in the env files only, empty in their examples.
    for example, key in (
        ("postgres.env.example", "POSTGRES_PASSWORD"),
        ("salon.env.example", "PGPASSWORD"),
    ):
        lines = (DEPLOY / example).read_text().splitlines()
        assert f"{key}=" in lines, example
