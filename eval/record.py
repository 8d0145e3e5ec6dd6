"""Record rollout videos: robot camera beside a top-down view, with a caption per step.

Episode k uses the evaluation seed `rollout.episode_seed(seed, k)`, the same episodes that
`eval.report` scores, so a video shows exactly the episodes behind a report's first rows.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from envs import ACTION_NAMES
from envs.config import EnvConfig
from eval.rollout import (
    Episode,
    OracleAgent,
    PolicyAgent,
    RandomAgent,
    episode_seed,
    make_eval_env,
    run_episode,
)
from eval.video import compose_frame, overlay_lines, write_gif, write_mp4
from policies.checkpoint import CheckpointError, load_checkpoint
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


def episode_frames(ep: Episode, policy: str, continuous: bool) -> Iterator[np.ndarray]:
    """The composed `(H, W, 3)` uint8 frames of one episode: its `steps + 1` observations.

    Frame 0 is the reset observation (no action yet); frame i > 0 follows step i.
    """
    number = int(ep.record["episode"])
    for i, (camera, view) in enumerate(ep.frames):
        if i == 0:
            lines = caption(policy, number, 0, None, None, None, False, False, continuous)
        else:
            s = ep.steps[i - 1]
            lines = caption(policy, number, s.step, s.action, s.reward, s.distance, s.success,
                            s.collided, continuous)
        yield compose_frame(camera, view, lines)


def record_video(
    target: str | os.PathLike[str] | None,
    out: str | os.PathLike[str] = "video.mp4",
    policy: str = "checkpoint",
    episodes: int = 2,
    split: str = "heldout",
    seed: int = 0,
    fps: int = 10,
    gif: bool = True,
) -> dict[str, Any]:
    """Roll `episodes` episodes of `policy` and write them as one MP4 (and a small GIF beside).

    `target` is a `.pt` file or a run directory; it is required for `policy="checkpoint"` and
    optional otherwise (the oracle and the random policy then run in the default `EnvConfig`
    with `split`; with a checkpoint, in its training env). The same seed always gives the same
    video. Frames hold all episodes back to back, `steps + 1` per episode. Returns `{"mp4":
    path, "gif": path or None, "frames": count written, "episodes": [episode records]}`.
    """
    if policy not in VIDEO_POLICIES:
        raise ValueError(f"unknown policy {policy!r}; use one of {list(VIDEO_POLICIES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if Path(out).suffix.lower() != ".mp4":
        raise ValueError(f"out must be an .mp4 path (the GIF goes beside it), got {out}")
    if policy == "checkpoint" and target is None:
        raise CheckpointError("recording the checkpoint needs one: pass a .pt file or a run "
                              "directory, or record policy='oracle' / 'random'")
    loaded = load_checkpoint(target) if target is not None else None
    if loaded is not None:
        cfg, continuous = loaded.meta.env_config(split), loaded.continuous
    else:
        cfg, continuous = EnvConfig(split=split), False
    env = make_eval_env(cfg, continuous, render=True)
    with contextlib.closing(env), torch_threads(1):
        if policy == "checkpoint":
            agent = PolicyAgent(loaded)
        elif policy == "oracle":
            agent = OracleAgent(continuous)
        else:
            agent = RandomAgent(env.action_space, seed)
        rolled = [run_episode(env, agent, episode_seed(seed, k), k, keep_frames=True)
                  for k in range(episodes)]

    def frames() -> Iterator[np.ndarray]:
        for ep in rolled:
            yield from episode_frames(ep, policy, continuous)

    # Composed frames are made twice (MP4, then GIF) rather than held: ~0.5 MB each at 256 px.
    mp4 = Path(out)
    count = write_mp4(frames(), mp4, fps=fps)
    gif_path = None
    if gif:
        gif_path = mp4.with_suffix(".gif")
        write_gif(frames(), gif_path, fps=fps)
    return {"mp4": str(mp4), "gif": None if gif_path is None else str(gif_path),
            "frames": count, "episodes": [ep.record for ep in rolled]}
