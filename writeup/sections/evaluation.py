"""Evaluation on the held-out split: policy, oracle and random on the same episodes."""

from __future__ import annotations

import rundir
from writeup.commands import Commands, fill
from writeup.doc import Doc, is_number
from writeup.sections.common import HELDOUT, join, table

EVAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("success_rate", "success"), ("spl", "SPL"), ("soft_spl", "SoftSPL"),
    ("collisions_per_episode", "collisions / episode"), ("mean_steps", "steps"),
    ("mean_return", "return"))


def evaluation(doc: Doc, cmd: Commands) -> str:
    if not doc.has(HELDOUT):
        return join("## Evaluation on the held-out split", fill(cmd.eval()))
    names = [n for n in doc.value(HELDOUT, "policies") or ("policy", "oracle", "random")
             if isinstance(doc.value(HELDOUT, n), dict)]
    rows = [[f"**{n}**" if n == "policy" else n, doc.num(HELDOUT, n, "episodes", kind="int")]
            + [doc.ci(HELDOUT, n, key) for key, _ in EVAL_COLUMNS] for n in names]
    ratio = doc.value(HELDOUT, "spl_vs_oracle")
    ratio_text = (f"The policy's SPL is {doc.num(HELDOUT, 'spl_vs_oracle', kind='ratio')} of "
                  "the oracle's on the same episodes." if is_number(ratio) else
                  "No SPL ratio: the oracle scored no SPL on these episodes or the policy "
                  "was not evaluated.")
    return join(
        "## Evaluation on the held-out split",
        f"Split `{doc.text(HELDOUT, 'split')}`, evaluation seed "
        f"{doc.num(HELDOUT, 'seed', kind='int')}: every policy is scored on the same episodes "
        "(same layouts and appearance), so differences between rows come from the policies. "
        "`oracle` is the privileged grid planner, `random` draws uniform actions. Each cell is "
        "the mean over episodes with its 95 % bootstrap interval.",
        table(["policy", "episodes", *(label for _, label in EVAL_COLUMNS)], rows),
        ratio_text, f"Source: `{HELDOUT}` and `{rundir.episodes_file('<policy>')}` beside it.")
