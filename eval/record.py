"""Record rollout videos: robot camera, top-down map and chase camera, with a caption per step.

Episode k uses the evaluation seed `rollout.episode_seed(seed, k)`, the same episodes that
`eval.report` scores, so a video shows exactly the episodes behind a report's rows.

`record_video` writes the first episodes of a policy into one MP4 (and a GIF). `record_failures`
looks for the policy's failed episodes the way `embodied eval` runs them (same env, same seeds,
no rendering), picks the first N spread across failure modes (`pick_failures`), replays each
with the cameras on, and writes one MP4 per episode plus an index (`rundir.FAILURES_INDEX_FILE`)
naming episode, seed, failure mode and file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import rundir
from envs import ACTION_NAMES
from envs.chase import CHASE, ChaseCamera, ChaseRecorder
from envs.config import EnvConfig
from eval.failures import count_modes, failure_mode
from eval.rollout import (
    TEST_SEED,
    Agent,
    Episode,
    OracleAgent,
    PolicyAgent,
    RandomAgent,
    episode_seed,
    evaluate,
    make_eval_env,
    run_episode,
)
from eval.video import compose_frame, overlay_lines, write_gif, write_mp4
from policies.checkpoint import CheckpointError, LoadedPolicy, load_checkpoint
from policies.threads import torch_threads

VIDEO_POLICIES = ("checkpoint", "oracle", "random")
"""What `record_video` can drive: a trained checkpoint, the privileged planner, random actions."""


def action_label(action: Any, continuous: bool) -> str | None:
    """`'forward-left'` for a discrete action, None for a continuous one (shown as numbers)."""
    if continuous or action is None:
        return None
    index = int(action)
    return ACTION_NAMES[index] if 0 <= index < len(ACTION_NAMES) else str(index)


def caption(policy: str, episode: int, step: int, action: Any, reward: float | None,
            distance: float | None, success: bool, collided: bool, continuous: bool
            ) -> list[str]:
    """The caption lines of one frame (`overlay_lines`, discrete actions shown by name)."""
    label = action_label(action, continuous)
    lines = overlay_lines({
        "policy": policy, "episode": episode, "step": step,
        "action": None if label is not None else action, "reward": reward,
        "distance": distance, "success": success, "collided": collided,
    })
    if label is not None:
        # overlay_lines formats an action as numbers; with none given it prints "action -"
        lines[1] = lines[1].replace("action -", f"action {label}", 1)
    return lines


def episode_frames(ep: Episode, policy: str, continuous: bool,
                   chase: Sequence[np.ndarray] = (), note: str | None = None
                   ) -> Iterator[np.ndarray]:
    """The composed `(H, W, 3)` uint8 frames of one episode: its `steps + 1` observations.

    Frame 0 is the reset observation (no action yet); frame i > 0 follows step i. `chase`,
    when given, holds one chase-camera view per frame (`ChaseRecorder.views`), shown right of
    the map; `note` is a fourth caption line on every frame (a failure video's mode).
    """
    if chase and len(chase) != len(ep.frames):
        raise ValueError(f"{len(chase)} chase views for {len(ep.frames)} frames; record them "
                         "with the same ChaseRecorder that ran the episode")
    number = int(ep.record["episode"])
    for i, (camera, view) in enumerate(ep.frames):
        if i == 0:
            lines = caption(policy, number, 0, None, None, None, False, False, continuous)
        else:
            s = ep.steps[i - 1]
            lines = caption(policy, number, s.step, s.action, s.reward, s.distance, s.success,
                            s.collided, continuous)
        if note:
            lines.append(note)
        yield compose_frame(camera, view, lines, extra_views=(chase[i],) if chase else ())


def _prepare(target: str | os.PathLike[str] | None, policy: str, split: str
             ) -> tuple[EnvConfig, bool, LoadedPolicy | None]:
    """Check `policy` and load the checkpoint: (env config on `split`, continuous, loaded)."""
    if policy not in VIDEO_POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {list(VIDEO_POLICIES)}")
    if policy == "checkpoint" and target is None:
        raise CheckpointError("recording the checkpoint needs one: pass a .pt file or a run "
                              "directory, or record policy='oracle' / 'random'")
    loaded = load_checkpoint(target) if target is not None else None
    if loaded is not None:
        return loaded.meta.env_config(split), loaded.continuous, loaded
    return EnvConfig(split=split), False, None


def _agent(policy: str, loaded: LoadedPolicy | None, env, continuous: bool, seed: int
           ) -> Agent:
    """A fresh agent, built as `eval.report` builds it, so both act alike on an episode."""
    if policy == "checkpoint":
        return PolicyAgent(loaded)
    if policy == "oracle":
        return OracleAgent(continuous)
    return RandomAgent(env.action_space, seed)


def _video_env(cfg: EnvConfig, continuous: bool, chase: ChaseCamera | None):
    """The eval env with the top-down view on, wrapped to render the chase view if asked."""
    env = make_eval_env(cfg, continuous, render=True)
    return env if chase is None else ChaseRecorder(env, chase)


def _views(env) -> list[np.ndarray]:
    """The chase views of the episode `env` just ran ([] without a chase camera)."""
    return list(env.views) if isinstance(env, ChaseRecorder) else []


def record_video(
    target: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] = "video.mp4",
    policy: str = "checkpoint",
    episodes: int = 2,
    split: str = "heldout",
    seed: int = 0,
    fps: int = 10,
    gif: bool = True,
    chase: ChaseCamera | None = CHASE,
) -> dict[str, Any]:
    """Roll `episodes` episodes of `policy` and write them as one MP4 (and a small GIF beside).

    `target` is a `.pt` file or a run directory; it is required for `policy="checkpoint"` and
    optional otherwise (the oracle and the random policy then run in the default `EnvConfig`
    with `split`; with a checkpoint, in its training env). Each frame shows the robot's camera,
    the top-down map and, unless `chase` is None, the chase camera (`envs.chase`). The same
    seed always gives the same video. Frames hold all episodes back to back, `steps + 1` per
    episode. Returns `{"mp4": path, "gif": path or None, "frames": count written,
    "episodes": [episode records]}`.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if Path(out).suffix.lower() != ".mp4":
        raise ValueError(f"out must be an .mp4 path (the GIF goes beside it), got {out}")
    cfg, continuous, loaded = _prepare(target, policy, split)
    env = _video_env(cfg, continuous, chase)
    rolled: list[tuple[Episode, list[np.ndarray]]] = []
    with contextlib.closing(env), torch_threads(1):
        agent = _agent(policy, loaded, env, continuous, seed)
        for k in range(episodes):
            ep = run_episode(env, agent, episode_seed(seed, k), k, keep_frames=True)
            rolled.append((ep, _views(env)))

    def frames() -> Iterator[np.ndarray]:
        for ep, views in rolled:
            yield from episode_frames(ep, policy, continuous, views)

    # Composed frames are made twice (MP4, then GIF) rather than held: ~0.8 MB each.
    mp4 = Path(out)
    count = write_mp4(frames(), mp4, fps=fps)
    gif_path = None
    if gif:
        gif_path = mp4.with_suffix(".gif")
        write_gif(frames(), gif_path, fps=fps)
    return {"mp4": str(mp4), "gif": None if gif_path is None else str(gif_path),
            "frames": count, "episodes": [ep.record for ep, _ in rolled]}


# ------------------------------------------------------------------------- failed episodes


def pick_failures(records: Sequence[Mapping[str, Any]], count: int
                  ) -> list[Mapping[str, Any]]:
    """The first `count` failed episode records, spread across failure modes.

    Modes are taken in the order they first appear; the first failure of each mode is picked,
    then the second of each, and so on until `count` are picked, so every mode that occurs is
    shown before any mode is shown twice. Crashed episodes (mode ``error``) are left out: they
    have no trajectory to show. Returned in episode order.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    by_mode: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        mode = failure_mode(record)
        if mode is not None and mode != "error":
            by_mode.setdefault(mode, []).append(record)
    picked: list[Mapping[str, Any]] = []
    depth = 0
    while len(picked) < count and any(len(group) > depth for group in by_mode.values()):
        for group in by_mode.values():
            if len(group) > depth and len(picked) < count:
                picked.append(group[depth])
        depth += 1
    return sorted(picked, key=lambda r: int(r["episode"]))


def _failed_modes(records: Sequence[Mapping[str, Any]]) -> set[str]:
    return {m for m in map(failure_mode, records) if m is not None and m != "error"}


def scan_failures(env, agent: Agent, episodes: int, seed: int, count: int,
                  progress: bool = False) -> list[dict[str, Any]]:
    """Episode records of `agent` on evaluation episodes 0, 1, ... of `seed`, as
    `embodied eval` runs them, until `episodes` have run or `count` failure modes have shown.

    Stopping at `count` modes is safe: `pick_failures` then takes the first failure of each of
    the first `count` modes, and no later episode can change that choice.
    """
    records: list[dict[str, Any]] = []
    with tqdm(total=episodes, desc="episodes", unit="ep", disable=not progress,
              leave=False) as bar:
        for record in evaluate(env, agent, episodes, seed):
            records.append(record)
            bar.update(1)
            if len(_failed_modes(records)) >= count:
                break
    return records


def _same_episode(first: Mapping[str, Any], again: Mapping[str, Any]) -> bool:
    keys = ("seed", "success", "steps", "collisions", "failure_mode")
    return all(first.get(k) == again.get(k) for k in keys)


def record_failures(
    target: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    failures: int,
    policy: str = "checkpoint",
    episodes: int = 200,
    split: str = "heldout",
    seed: int = TEST_SEED,
    fps: int = 10,
    chase: ChaseCamera | None = CHASE,
    progress: bool = False,
) -> dict[str, Any]:
    """Find `policy`'s failed evaluation episodes and render `failures` of them, one MP4 each.

    The episodes are those of `embodied eval` with the same `split` and `seed` (episode k
    resets with `episode_seed(seed, k)`, in the env eval uses), scanned in order, at most
    `episodes` of them (`scan_failures`). The chosen ones (`pick_failures`) are replayed with
    the cameras on; a replay that ends differently from its scan raises RuntimeError (the
    rollout would not be deterministic under its seed). Each video's frames show the robot's
    camera, the map and the chase view, and a caption line naming the failure mode.

    Writes `out_dir/failure_<episode>_<mode>.mp4` per video, then `out_dir/index.json`
    (`rundir.FAILURES_INDEX_FILE`), both atomically, and returns the index: `policy`,
    `checkpoint`, `split`, `seed`, `requested`, `max_episodes` (the `episodes` asked for),
    `scanned_episodes`, `scanned_failure_modes`
    (`{mode: count}` over the scanned episodes), `failures_found` (failed episodes scanned,
    crashes excluded) and `videos` (`[{episode, seed, failure_mode, file, frames, steps}]`,
    `file` relative to `out_dir`). Fewer videos than `failures` when fewer failed.
    """
    if failures < 1:
        raise ValueError(f"--failures must be >= 1, got {failures}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    out = Path(out_dir)
    if out.suffix.lower() == ".mp4" or (out.exists() and not out.is_dir()):
        raise ValueError(f"{out} names a file; failure videos go into a folder: pass --out DIR")
    cfg, continuous, loaded = _prepare(target, policy, split)
    with torch_threads(1):
        env = make_eval_env(cfg, continuous)
        with contextlib.closing(env):
            agent = _agent(policy, loaded, env, continuous, seed)
            records = scan_failures(env, agent, episodes, seed, failures, progress)
        chosen = pick_failures(records, failures)
        videos = []
        env = _video_env(cfg, continuous, chase)
        with contextlib.closing(env):
            agent = _agent(policy, loaded, env, continuous, seed)
            for record in chosen:
                videos.append(_render_failure(env, agent, record, out, policy, continuous,
                                              fps))
    index = {
        "policy": policy,
        "checkpoint": str(loaded.path) if loaded is not None else None,
        "split": split,
        "seed": seed,
        "requested": failures,
        "max_episodes": episodes,
        "scanned_episodes": len(records),
        "scanned_failure_modes": count_modes(records),
        "failures_found": sum(1 for m in map(failure_mode, records)
                              if m is not None and m != "error"),
        "videos": videos,
    }
    # last, so that the index never names a video that is not there yet
    rundir.write_json(out / rundir.FAILURES_INDEX_FILE, index)
    return index


def _render_failure(env, agent: Agent, record: Mapping[str, Any], out: Path, policy: str,
                    continuous: bool, fps: int) -> dict[str, Any]:
    """Replay one failed episode with the cameras on and write its MP4; its index entry."""
    number, seed, mode = int(record["episode"]), int(record["seed"]), failure_mode(record)
    ep = run_episode(env, agent, seed, number, keep_frames=True)
    if not _same_episode(record, ep.record):
        raise RuntimeError(
            f"episode {number} (seed {seed}) ended differently when replayed for its video "
            f"({mode}, {record['steps']} steps, then {ep.record['failure_mode']}, "
            f"{ep.record['steps']} steps): the rollout is not deterministic under its seed")
    name = rundir.failure_video_file(number, str(mode))
    note = f"failure: {mode}  (seed {seed})"
    frames = write_mp4(episode_frames(ep, policy, continuous, _views(env), note), out / name,
                       fps=fps)
    return {"episode": number, "seed": seed, "failure_mode": mode, "file": name,
            "frames": frames, "steps": int(ep.record["steps"])}


def failures_report(index: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> list[str]:
    """What `embodied video --failures` prints about a `record_failures` index: a line saying
    so when fewer failures were found than asked for, then the videos written."""
    videos, lines = index["videos"], []
    if len(videos) < index["requested"]:
        lines.append(f"Only {index['failures_found']} failed episode(s) among "
                     f"{index['scanned_episodes']} {index['split']} episodes (seed "
                     f"{index['seed']}), {index['requested']} asked for: rendering "
                     f"{len(videos)}.")
    modes: dict[str, int] = {}
    for video in videos:
        modes[video["failure_mode"]] = modes.get(video["failure_mode"], 0) + 1
    shown = ", ".join(f"{mode} {n}" for mode, n in modes.items()) or "none"
    out = Path(out_dir)
    lines.append(f"Wrote {len(videos)} failure video(s) to {out} ({shown}); index "
                 f"{out / rundir.FAILURES_INDEX_FILE}")
    return lines
