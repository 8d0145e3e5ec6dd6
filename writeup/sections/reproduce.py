"""Reproduce every number: the commands rebuilt from the artifacts, the recorded versions."""

from __future__ import annotations

from writeup.commands import Commands, fill
from writeup.doc import Doc
from writeup.sections.common import RUN, join, table


def reproduce(doc: Doc, cmd: Commands) -> str:
    blocks = []
    for comment, lines in cmd.reproduce():
        blocks.append(f"# {comment}\n" + "\n".join(lines))
    parts: list[str | None] = [
        "## Reproduce every number",
        f"Each command below is rebuilt from the artifact it produced (the run's `{RUN}`, "
        "the settings stored in each report and benchmark file).",
        "```bash\n" + "\n\n".join(blocks) + "\n```"]
    versions = doc.keys(RUN, "versions")
    if versions:
        rows = [[name, f"`{doc.text(RUN, 'versions', name)}`"] for name in versions]
        commit = doc.value(RUN, "git_commit")
        rows.append(["git commit", f"`{doc.text(RUN, 'git_commit')}`" if commit else
                     "not recorded"])
        rows.append(["learner device", doc.text(RUN, "device")])
        parts += [f"Versions recorded in `{RUN}`:", table(["component", "version"], rows)]
    else:
        parts.append(fill(cmd.train()))
    return join(*parts)
