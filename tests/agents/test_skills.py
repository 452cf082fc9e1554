"""Per-agent skills: ``<home>/skills/*.md`` after the persona, in name order, under a cap,
re-read when a file changes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from structlog.testing import capture_logs

from salon.agents.backend import TurnRequest
from salon.agents.echo import EchoBackend
from salon.agents.profile import AgentProfile
from salon.agents.runtime import AgentRuntime
from salon.agents.skills import MAX_SKILLS_BYTES, SkillSet, skills
from salon.ids import AgentId


class ContextReader(EchoBackend):
    """Echo, but as a backend that reads persona and history (echo itself reads none)."""

    reads_context = True


def profile(
    home: Path, persona: str | None = None, skill_set: SkillSet | None = None
) -> AgentProfile:
    coder = AgentProfile(AgentId("coder"), "Coder", "Writes code", home, persona)
    return coder if skill_set is None else replace(coder, skill_set=skill_set)


def write_skill(home: Path, name: str, text: str) -> Path:
    path = home / "skills" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_no_skills_dir_means_the_persona_alone(tmp_path: Path) -> None:
    assert profile(tmp_path, "You write code.").persona() == "You write code."
    assert profile(tmp_path).persona() is None
    assert skills(tmp_path) == []


def test_skills_follow_the_persona_in_name_order(tmp_path: Path) -> None:
    write_skill(tmp_path, "b-review.md", "## Review\nRead the diff twice.\n")
    write_skill(tmp_path, "a-git.md", "## Git\nSmall commits.")
    write_skill(tmp_path, "10-late.md", "## Ten\n")
    write_skill(tmp_path, "notes.txt", "not a skill")
    write_skill(tmp_path, ".hidden.md", "not a skill either")
    (tmp_path / "skills" / "dir.md").mkdir()

    assert profile(tmp_path, "You write code.").persona() == (
        "You write code.\n\n## Ten\n\n## Git\nSmall commits.\n\n## Review\nRead the diff twice."
    )
    assert skills(tmp_path) == [
        ("10-late.md", len("## Ten\n")),
        ("a-git.md", len("## Git\nSmall commits.")),
        ("b-review.md", len("## Review\nRead the diff twice.\n")),
    ]


def test_soul_md_comes_first_and_skills_alone_make_a_prompt(tmp_path: Path) -> None:
    write_skill(tmp_path, "tone.md", "Be brief.")
    assert profile(tmp_path).persona() == "Be brief."
    (tmp_path / "SOUL.md").write_text("I am the coder.\n", encoding="utf-8")
    coder = profile(tmp_path, "config persona, overridden by SOUL.md")
    assert coder.soul() == "I am the coder."
    assert coder.persona() == "I am the coder.\n\nBe brief."


def test_files_past_the_cap_are_left_out_with_one_warning(tmp_path: Path) -> None:
    write_skill(tmp_path, "1.md", "a" * 40)
    write_skill(tmp_path, "2.md", "b" * 40)
    write_skill(tmp_path, "3.md", "c" * 30)  # past the cap: 40 + 40 + 30 > 100
    write_skill(tmp_path, "4.md", "d" * 5)  # would fit, but comes after a skipped one
    coder = profile(tmp_path, "P", skill_set=SkillSet(cap_bytes=100))

    with capture_logs() as logs:
        first = coder.persona()
        second = coder.persona()  # nothing changed: no second warning

    assert first == second == f"P\n\n{'a' * 40}\n\n{'b' * 40}"
    warnings = [e for e in logs if e["event"] == "skills.over_cap"]
    assert len(warnings) == 1
    assert warnings[0]["skipped"] == ["3.md", "4.md"]
    assert warnings[0]["log_level"] == "warning"
    # The listing shows every file, the skipped ones too.
    assert [name for name, _ in skills(tmp_path)] == ["1.md", "2.md", "3.md", "4.md"]


def test_the_default_cap_is_32_kib(tmp_path: Path) -> None:
    assert MAX_SKILLS_BYTES == 32 * 1024
    write_skill(tmp_path, "a.md", "x" * (MAX_SKILLS_BYTES - 10))
    write_skill(tmp_path, "b.md", "y" * 11)
    with capture_logs() as logs:
        prompt = profile(tmp_path).persona()
    assert prompt == "x" * (MAX_SKILLS_BYTES - 10)
    assert [e["skipped"] for e in logs if e["event"] == "skills.over_cap"] == [["b.md"]]


def test_a_changed_skill_applies_on_the_next_call(tmp_path: Path) -> None:
    path = write_skill(tmp_path, "style.md", "Use tabs.")
    coder = profile(tmp_path, "P")
    assert coder.persona() == "P\n\nUse tabs."

    path.write_text("Use four spaces.", encoding="utf-8")
    assert coder.persona() == "P\n\nUse four spaces."

    # An edit that keeps the size is seen too (the modification time changed).
    path.write_text("Use four tables", encoding="utf-8")
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert coder.persona() == "P\n\nUse four tables"

    write_skill(tmp_path, "extra.md", "Added later.")
    assert coder.persona() == "P\n\nAdded later.\n\nUse four tables"
    path.unlink()
    assert coder.persona() == "P\n\nAdded later."


def test_unchanged_skills_are_not_read_again(tmp_path: Path) -> None:
    path = write_skill(tmp_path, "style.md", "Use tabs.")
    skill_set = SkillSet()
    assert skill_set.prompt(tmp_path) == "Use tabs."
    # Same name, size and modification time: the cached text stands.
    stat = path.stat()
    path.write_text("Use TABS.", encoding="utf-8")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert skill_set.prompt(tmp_path) == "Use tabs."


def test_a_skill_that_is_not_utf8_is_skipped_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "bad.md").write_bytes(b"\xff\xfe binary")
    write_skill(tmp_path, "good.md", "Fine.")
    with capture_logs() as logs:
        assert profile(tmp_path).persona() == "Fine."
    assert [e["skill"] for e in logs if e["event"] == "skills.not_utf8"] == ["bad.md"]


# --- what the backend gets ------------------------------------------------------------


@dataclass
class _Stored:
    role: str
    content: str
    turn_id: str | None


class _Sessions:
    async def chat_id(self, session_key: str, agent_id: str) -> str:
        return "1"

    async def messages(self, session_key: str, agent_id: str) -> Sequence[_Stored]:
        return [_Stored("user", "earlier", "t0"), _Stored("assistant", "reply", "t0")]

    async def append_turn(
        self, session_key: str, agent_id: str, turn_id: str, messages: list[tuple[str, str, int]]
    ) -> None:
        pass


def bare(text: str) -> TurnRequest:
    return TurnRequest(AgentId("coder"), "@alice:localhost", text, "s", chat_id="")


async def test_the_backend_gets_persona_and_skills_as_one_system_message(tmp_path: Path) -> None:
    write_skill(tmp_path, "a.md", "Skill A.")
    coder = profile(tmp_path, "You write code.")
    runtime = AgentRuntime(coder, ContextReader(), _Sessions())

    request = await runtime.prepare(bare("hi"))

    assert request.persona == "You write code.\n\nSkill A."
    messages = request.messages()
    assert (messages[0].role, messages[0].content) == ("system", "You write code.\n\nSkill A.")
    assert [m.role for m in messages[1:]] == ["user", "assistant", "user"]

    write_skill(tmp_path, "b.md", "Skill B.")  # the next turn sees it
    request = await runtime.prepare(bare("again"))
    assert request.persona == "You write code.\n\nSkill A.\n\nSkill B."
