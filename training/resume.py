"""Where a resumed run continues from: a checkpoint folder, read weights-only and checked.

`checkpoints/latest.json` names the newest complete checkpoint (`step_<N>/` with policy.pt and
trainer.pt); `--from step_<N>` picks another. A file that cannot be read (corrupt, truncated,
or a pickle holding code, which a weights-only load refuses) is reported in one line that
names it and offers the checkpoint before it.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import rundir


class ResumeError(rundir.RunFileError):
    """A run cannot be resumed from the checkpoint asked for; the message names the file."""


@dataclass(frozen=True)
class ResumePoint:
    """A checkpoint to continue from: its folder, the trainer state and the policy weights."""

    folder: Path
    state: dict[str, Any]
    policy_state: dict[str, torch.Tensor]

    @property
    def timesteps(self) -> int:
        return int(self.state["timesteps"])


def checkpoint_folders(run_dir: Path) -> list[Path]:
    """The run's `step_<N>` folders that hold a trainer state, oldest first."""
    root = run_dir / rundir.CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step_*") if (p / rundir.TRAINER_FILE).is_file())


def _resume_hint(run_dir: Path, before: Path | None) -> str:
    """How to continue from the newest checkpoint older than `before` (or the newest)."""
    older = [p for p in checkpoint_folders(run_dir) if before is None or p.name < before.name]
    if not older:
        return "no earlier checkpoint is left to resume from; start a new run instead"
    return (f"resume from the previous checkpoint with `embodied train --resume {run_dir} "
            f"--from {older[-1].name}`")


def _load(path: Path, what: str, run_dir: Path, folder: Path) -> Any:
    """torch.load(weights_only=True), with every failure as one line naming the file."""
    if not path.is_file():
        raise ResumeError(f"{path} is missing; {_resume_hint(run_dir, folder)}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests weights_only=False, which would run the file's code
        reason = "it holds objects other than tensors and plain values, which are refused"
    except Exception as err:  # zip, EOF, runtime errors: a torn or foreign file
        reason = f"{type(err).__name__}: corrupt or truncated"
    raise ResumeError(f"{path} is not a readable {what} ({reason}); "
                      f"{_resume_hint(run_dir, folder)}")


def _checked_state(state: Any, path: Path, method: str, run_dir: Path, folder: Path
                   ) -> dict[str, Any]:
    """The trainer state, if it has the fields a resume reads and fits the run's method."""
    problem = None
    if not isinstance(state, dict):
        problem = f"it holds a {type(state).__name__}, not a trainer state"
    elif not isinstance(state.get("timesteps"), int) or state["timesteps"] < 0:
        problem = "its timesteps are missing or not a count"
    elif not isinstance(state.get("optimizer"), dict):
        problem = "its optimizer state is missing"
    elif state.get("kind") != method:
        problem = f"it holds a {state.get('kind')!r} state, and method {method!r} resumes " \
                  f"from a {method!r} one"
    elif method == "distill" and not all(isinstance(state.get(k), int)
                                         for k in ("iteration", "episodes")):
        problem = "its iteration or episode counts are missing"
    if problem:
        raise ResumeError(f"{path} is not a usable trainer state ({problem}); "
                          f"{_resume_hint(run_dir, folder)}")
    return state


def resume_point(run_dir: Path, method: str, step: str | None = None) -> ResumePoint:
    """The checkpoint `run_dir` continues from: `step` (a `step_<N>` folder name) if given,
    else the one `checkpoints/latest.json` names. Raises `ResumeError` (one line) otherwise."""
    if step is not None:
        folder = run_dir / rundir.CHECKPOINTS_DIR / Path(step).name
        if not folder.is_dir():
            names = ", ".join(p.name for p in checkpoint_folders(run_dir)) or "none"
            raise ResumeError(f"{folder} does not exist; checkpoints of {run_dir}: {names}")
    else:
        pointer = run_dir / rundir.LATEST_FILE
        if not pointer.is_file():
            raise ResumeError(f"{run_dir} has no resumable checkpoint ({rundir.LATEST_FILE}); "
                              "start a new run instead")
        try:
            data = rundir.read_json(pointer)
        except rundir.RunFileError as err:
            raise ResumeError(f"{err}; or {_resume_hint(run_dir, None)}") from None
        if not isinstance(data, dict) or not isinstance(data.get("path"), str):
            raise ResumeError(f"{pointer} does not name a checkpoint folder; "
                              f"{_resume_hint(run_dir, None)}")
        folder = run_dir / rundir.CHECKPOINTS_DIR / Path(data["path"]).name
    trainer_path = folder / rundir.TRAINER_FILE
    state = _checked_state(_load(trainer_path, "trainer state", run_dir, folder), trainer_path,
                           method, run_dir, folder)
    policy_path = folder / rundir.POLICY_FILE
    payload = _load(policy_path, "policy checkpoint", run_dir, folder)
    weights = payload.get("state_dict") if isinstance(payload, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor)
                                                for v in weights.values()):
        raise ResumeError(f"{policy_path} holds no policy weights; "
                          f"{_resume_hint(run_dir, folder)}")
    return ResumePoint(folder, state, weights)


def unfit(point: ResumePoint, run_dir: Path, err: Exception) -> ResumeError:
    """The one-line error for weights or optimizer state that do not fit the run's network
    (raised by `load_state_dict` when a checkpoint is swapped or edited)."""
    text = str(err).strip()
    first = text.splitlines()[0][:160] if text else type(err).__name__
    return ResumeError(f"{point.folder} does not fit this run's network or optimizer ({first}); "
                       f"{_resume_hint(run_dir, point.folder)}")
