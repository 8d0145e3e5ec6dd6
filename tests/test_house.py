"""The house plan of ../shared/STYLE.md, enforced: imports only run downhill.

    ground   rundir        imports nothing of the project
    floor 1  envs/         imports only rundir
    floor 2  policies/     imports only envs and rundir
    floor 3  eval/         imports neither training nor writeup
    apart    writeup/      imports only rundir (it reads artifacts, never code)
    door     embodied_cli  imported by no stage

Every import counts, including those inside functions (the lazy imports that keep the CLI
fast), and relative imports resolve to the package they sit in.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROJECT = ("rundir", "envs", "policies", "eval", "training", "writeup", "embodied_cli")
"""Top-level names of the project's packages and modules."""

ALLOWED: dict[str, set[str]] = {
    "rundir": set(),
    "envs": {"rundir"},
    "policies": {"envs", "rundir"},
    "eval": {"envs", "policies", "rundir"},
    "training": {"envs", "policies", "eval", "writeup", "rundir"},
    "writeup": {"rundir"},
    "embodied_cli": {"envs", "policies", "eval", "training", "writeup", "rundir"},
}
"""What each room may import from the project besides itself; no room may import the CLI."""


def project_imports(source: str, package: str) -> set[str]:
    """Top-level project names that `source` (a module of `package`) imports, anywhere."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [package] if node.level else [node.module or ""]
        else:
            continue
        found |= {n.split(".")[0] for n in names} & set(PROJECT)
    return found


def sources(room: str) -> list[Path]:
    if room == "rundir":
        return [REPO / "rundir.py"]
    return sorted((REPO / room).rglob("*.py"))


@pytest.mark.parametrize("room", sorted(ALLOWED))
def test_imports_run_downhill(room: str) -> None:
    broken = []
    for path in sources(room):
        uphill = project_imports(path.read_text(encoding="utf-8"), room) - ALLOWED[room] - {room}
        if uphill:
            broken.append(f"{path.relative_to(REPO)} imports {sorted(uphill)}")
    assert not broken, "house plan broken: " + "; ".join(broken)


def test_every_room_is_checked() -> None:
    rooms = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()} - {"tests"}
    assert rooms <= set(ALLOWED), f"packages without a house rule: {rooms - set(ALLOWED)}"
    assert all(sources(room) for room in ALLOWED)


@pytest.mark.parametrize(("source", "expected"), [
    ("import training.run", {"training"}),
    ("def f():\n    from writeup import build\n", {"writeup"}),
    ("class A:\n    def g(self):\n        import embodied_cli\n", {"embodied_cli"}),
    ("from . import sibling", {"envs"}),
    ("import numpy, rundir as r", {"rundir"}),
    ("from evaluation import x", set()),
])
def test_the_checker_sees_every_kind_of_import(source: str, expected: set[str]) -> None:
    assert project_imports(source, "envs") == expected
