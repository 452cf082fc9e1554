"""deploy/Dockerfile: multi-stage, installs only through deploy/install.sh, runs
unprivileged under tini, keeps state in /data and checks the real /healthz."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from salon.api import health

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: continuations joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The instructions of each stage (a FROM starts one)."""
    result: list[list[tuple[str, str]]] = []
    for word, rest in instructions((DEPLOY / "Dockerfile").read_text()):
        if word == "FROM":
            result.append([])
        if result:
            result[-1].append((word, rest))
    return result


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            env.update(part.split("=", 1) for part in shlex.split(rest))  # type: ignore[misc]
    return env


def test_multi_stage_and_only_install_sh_installs_python_packages() -> None:
    build, *_, final = stages()
    assert len(stages()) >= 2
    runs = [rest for stage in stages() for word, rest in stage if word == "RUN"]
    installs = [r for r in runs if "install.sh" in r]
    assert installs == ["sh deploy/install.sh /opt/salon /src"]
    assert ("RUN", installs[0]) in build
    # No pip anywhere else: what the image holds is what test_install.py installed.
    assert not [r for r in runs if "pip" in r]
    assert ("COPY", "--from=build /opt/salon /opt/salon") in final


def test_final_stage_runs_unprivileged_under_an_init() -> None:
    final = stages()[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage must set USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    entrypoint = json.loads(next(rest for word, rest in final if word == "ENTRYPOINT"))
    assert Path(entrypoint[0]).name in ("tini", "dumb-init")
    assert any(word == "RUN" and "install" in rest and "tini" in rest for word, rest in final)


def test_state_in_a_volume_that_the_config_uses() -> None:
    final = stages()[-1]
    assert ("VOLUME", '["/data"]') in final
    env = env_of(final)
    assert env["SALON_DATA_DIR"] == "/data"
    assert env["HOME"] == "/data"  # nothing tries to write a home on the read-only root
    config = (DEPLOY / "salon.yaml").read_text()
    assert "data_dir: ${SALON_DATA_DIR" in config
    assert "sqlite:///${SALON_DATA_DIR" in config


def test_healthcheck_asks_the_gateways_real_healthz_on_the_api_port() -> None:
    final = stages()[-1]
    check = next(rest for word, rest in final if word == "HEALTHCHECK")
    assert json.loads(check[check.index("CMD") + 3 :]) == [
        "/opt/salon/bin/python",
        "/opt/salon/healthcheck.py",
    ]
    env = env_of(final)
    url = urlsplit(env["SALON_HEALTHZ_URL"])
    listen_port = env["SALON_API_LISTEN"].rpartition(":")[2]
    assert url.port == int(listen_port)
    app = web.Application()
    health.add_routes(app)
    paths = {r.canonical for r in app.router.resources()}
    assert url.path in paths


def test_the_build_context_keeps_every_file_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = negate
        return keep

    copied = []
    for stage in stages():
        for word, rest in stage:
            if word == "COPY" and not rest.startswith("--from"):
                copied += rest.split()[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert included(source), f"{source} is excluded by Dockerfile.dockerignore"
