"""Robustness: success and SPL per randomization strength, one table per sweep."""

from __future__ import annotations

from writeup.collect import HELDOUT_DIR, SWEEP_PREFIX
from writeup.commands import Commands, fill
from writeup.doc import Doc, is_number
from writeup.sections.common import CONFIG, image, join, table


def _sweep_factor(name: str) -> str:
    """`eval_heldout/sweep_lighting.json` -> `lighting` (the PNG beside it shares the stem)."""
    return name.removeprefix(SWEEP_PREFIX).removesuffix(".json")


def robustness(doc: Doc, cmd: Commands) -> str:
    sweeps = sorted(name for name in doc.data.get("files", {})
                    if name.startswith(SWEEP_PREFIX))
    pngs = doc.data.get("figures", {})
    if not sweeps and not any(k.startswith("sweep_") for k in pngs):
        return join("## Robustness", fill(cmd.sweep()))
    trained = (f" (this run: {doc.num(CONFIG, 'env', 'strength', kind='g')})"
               if is_number(doc.value(CONFIG, "env", "strength")) else "")
    parts = ["## Robustness",
             "Success and SPL as the randomization strength moves away from the one used in "
             f"training{trained}; a sweep of one factor group holds every other group at "
             "strength 0."]
    for name in sweeps:
        factor = _sweep_factor(name)
        parts.append(f"### Sweep: {factor}")
        parts.append(image(doc, f"sweep_{factor}", f"Robustness sweep {factor}"))
        rows = [[doc.num(name, "rows", i, "strength", kind="g"),
                 doc.text(name, "rows", i, "policy"),
                 doc.num(name, "rows", i, "episodes", kind="int"),
                 doc.ci(name, "rows", i, "success_rate", kind="rate"),
                 doc.ci(name, "rows", i, "spl", kind="rate")]
                for i, _ in doc.records(name, "rows")]
        parts.append(table(["strength", "policy", "episodes", "success", "SPL"], rows))
        parts.append(f"Source: `{name}`.")
    tabled = {f"sweep_{_sweep_factor(name)}" for name in sweeps}
    for fig in sorted(k for k in pngs if k.startswith("sweep_") and k not in tabled):
        factor = fig.removeprefix("sweep_")
        parts += [f"### Sweep: {factor}", image(doc, fig, f"Robustness sweep {factor}"),
                  f"Its table needs `{HELDOUT_DIR}/{fig}.json`: {fill(cmd.sweep())}"]
    return join(*parts)
