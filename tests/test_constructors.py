"""Issue 14 §2: no constructor takes more than six parameters.

Parameters that travel together belong in a small frozen dataclass named for
what they are (limits, a policy, the services a command needs); this walk keeps
it that way for every class under src/salon.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "salon"
MAX_PARAMS = 6


def _param_count(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = fn.args
    names = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    count = len(names) + (args.vararg is not None) + (args.kwarg is not None)
    if names and names[0].arg in ("self", "cls"):
        count -= 1
    return count


def wide_constructors(root: Path = SRC) -> list[str]:
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for item in node.body:
                if (
                    isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and item.name == "__init__"
                ):
                    n = _param_count(item)
                    if n > MAX_PARAMS:
                        rel = path.relative_to(root.parent)
                        found.append(f"{rel}:{item.lineno} {node.name} ({n})")
    return found


def test_no_constructor_over_six_parameters() -> None:
    wide = wide_constructors()
    listing = "\n".join(wide)
    assert not wide, f"constructors over {MAX_PARAMS} parameters:\n{listing}"


def test_the_walk_finds_a_wide_constructor(tmp_path: Path) -> None:
    # Proof the walk can fail: seven parameters besides self are reported.
    pkg = tmp_path / "salon"
    pkg.mkdir()
    (pkg / "wide.py").write_text(
        "class Wide:\n"
        "    def __init__(self, a, b, c, *, d, e=1, f=2, g=3):\n"
        "        pass\n"
        "class Narrow:\n"
        "    def __init__(self, a, b, c, *, d, e=1, f=2):\n"
        "        pass\n"
    )
    assert wide_constructors(pkg) == ["salon/wide.py:2 Wide (7)"]
