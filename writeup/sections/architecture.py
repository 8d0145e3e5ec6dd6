"""Architecture: the data-flow diagram, the folder map and what a run directory holds."""

from __future__ import annotations

from pathlib import PurePath

import rundir
from writeup import architecture
from writeup.collect import FAILURES_INDEX, HELDOUT_DIR, VIDEO_GIF, VIDEO_MP4
from writeup.commands import Commands
from writeup.doc import Doc
from writeup.sections.common import join, table


def architecture_section(doc: Doc, cmd: Commands) -> str:
    link = doc.data.get("figures", {}).get("architecture")
    png = f"{architecture.PICTURE_NOTE} [{link}]({link})." if link else None
    folders = table(["folder", "what it holds"],
                    [[f"`{name}`", text] for name, text in architecture.FOLDERS])
    r = rundir
    run_dir = "\n".join(f"- `{name}`: {text}" for name, text in (
        (f"{r.CONFIG_FILE}, {r.RUN_FILE}", "the resolved config; command, versions, commit, seeds"),
        (f"{r.TRAIN_SUMMARY_FILE}, {r.EVAL_DURING_TRAINING_FILE}, {r.MONITOR_DIR}/, {r.TB_DIR}/",
         "training figures and logs"),
        (f"{r.BEST_DIR}/, {r.FINAL_DIR}/, {r.CHECKPOINTS_DIR}/",
         "weights-only checkpoints and resumable state"),
        (f"{HELDOUT_DIR}/", "held-out report, per-episode records, robustness sweeps"),
        (f"{VIDEO_MP4}, {VIDEO_GIF}", "recorded episodes"),
        (f"{PurePath(FAILURES_INDEX).parent}/", "failed held-out episodes, one video each, "
         "and their index"),
        (f"{r.ONNX_FILE}, {r.PARITY_FILE}, {r.DEPLOY_DIR}/", "export, parity, control-loop report"),
    ))
    return join(
        "## Architecture",
        "Data flows left to right. The run directory is the only hand-off between stages: "
        "each stage reads what the previous one wrote there, so any stage can be re-run alone.",
        "```mermaid\n" + architecture.mermaid() + "\n```", png,
        "### Folder map", folders, "### What a run directory holds", run_dir)
