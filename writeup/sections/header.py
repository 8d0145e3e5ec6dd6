"""The title and where every figure comes from: the files read, missing, unreadable."""

from __future__ import annotations

from writeup.commands import Commands
from writeup.doc import Doc
from writeup.sections.common import join


def header(doc: Doc, cmd: Commands) -> str:
    """The title, the command that wrote the notes, and the files read, missing or unreadable."""
    sources = ", ".join(f"`{name}`" for name in sorted(doc.data.get("files", {})))
    missing = doc.data.get("missing") or []
    errors = doc.data.get("errors") or {}
    lines = ["# Engineering notes: camera-only navigation in PyBullet",
             f"_Written by `{cmd.writeup()}` from the run directory and the benchmark folder "
             f"`{cmd.bench}`. Every measured figure below is read from one of these files: "
             f"{sources or 'none'}._"]
    if missing:
        lines.append("_Not found, so their sections name the command that produces them: "
                     + ", ".join(f"`{m}`" for m in missing) + "._")
    if errors:
        lines.append("_Unreadable, treated as missing: "
                     + "; ".join(f"`{k}` ({v})" for k, v in sorted(errors.items())) + "._")
    skipped = doc.data.get("skipped") or {}
    if skipped:
        lines.append("_Read with lines skipped: "
                     + "; ".join(f"`{k}` ({v})" for k, v in sorted(skipped.items())) + "._")
    return join(*lines)
