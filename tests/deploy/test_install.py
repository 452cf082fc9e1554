"""deploy/install.sh, the image's only install step, run here as-is: as an
unprivileged user, from a read-only copy of the source, into a fresh prefix."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path("deploy") / "install.sh"
pytestmark = pytest.mark.subprocess


def _user() -> pwd.struct_passwd:
    """Who runs the script: ourselves, or (as root, as in CI) an unprivileged user."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root and no unprivileged user (postgres, nobody) to run as")


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


@pytest.fixture
def fresh() -> Iterator[Path]:
    # Not tmp_path: its parents are private to root, and the user must reach this.
    path = Path(tempfile.mkdtemp(prefix="salon-install-"))
    path.chmod(0o755)
    yield path
    for p in path.rglob("*"):  # the source copy was made read-only
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path)


def _source_copy(fresh: Path) -> Path:
    src = fresh / "src-tree"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    shutil.copytree(ROOT / "deploy", src / "deploy", ignore=ignore)
    for p in [src, *src.rglob("*")]:  # read-only: nothing may be built inside it
        mode = p.stat().st_mode
        p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) | 0o444 | (mode & 0o111))
    return src


def _run_as(
    user: pwd.struct_passwd, argv: list[str], home: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k.startswith(("PIP_", "LANG", "LC_"))}
    env.update(PATH=os.environ["PATH"], HOME=str(home), TMPDIR=str(home))
    if os.geteuid() == 0:
        argv = ["runuser", "-u", user.pw_name, "--", *argv]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(900)
def test_install_sh_installs_and_checks_salon_as_an_unprivileged_user(fresh: Path) -> None:
    user = _user()
    src = _source_copy(fresh)
    home = fresh / "home"
    home.mkdir()
    os.chown(home, user.pw_uid, user.pw_gid)
    prefix = home / "salon"
    before = _tree(src)

    result = _run_as(user, ["sh", str(src / SCRIPT), str(prefix), str(src)], home, 840)

    assert result.returncode == 0, result.stdout + result.stderr
    # It ends by checking the shipped config with the installed CLI.
    assert f"{src}/deploy/salon.yaml: OK (2 agents" in result.stdout
    assert _tree(src) == before, "install.sh wrote into the source tree"
    for installed in (prefix / "bin" / "salon", prefix / "healthcheck.py"):
        assert installed.stat().st_uid == user.pw_uid, installed
    where = _run_as(
        user,
        [str(prefix / "bin" / "python"), "-c", "import salon; print(salon.__file__)"],
        home,
        60,
    )
    assert where.stdout.strip().startswith(str(prefix)), where.stdout + where.stderr

    # The installed CLI is the real check: a broken config is refused, file and key named.
    broken = home / "broken.yaml"
    broken.write_text(
        "homeserver: {url: http://h, server_name: h}\nagents: {e: {backend: {type: x}}}\n"
    )
    broken.chmod(0o644)
    check = _run_as(
        user, [str(prefix / "bin" / "salon"), "config", "check", "-c", str(broken)], home, 60
    )
    assert check.returncode == 2
    assert f"{broken}:2: agents.e.backend.type" in check.stderr


def test_install_sh_refuses_a_tree_that_is_not_salons(fresh: Path) -> None:
    result = subprocess.run(
        ["sh", str(ROOT / SCRIPT), str(fresh / "prefix"), str(fresh)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert f"{fresh}/pyproject.toml is missing" in result.stderr
    assert not (fresh / "prefix").exists()
