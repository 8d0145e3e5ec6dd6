"""Roll any policy (checkpoint, oracle, random) out for a set of seeded episodes.

Episode k of an evaluation with seed s resets the env with seed `episode_seed(s, k)`, a range
that training envs never use (they are seeded with small integers), so every policy in a
report is scored on the same episodes and none of them was seen in training. Model selection
during training uses `VALIDATION_SEED`; reports default to `TEST_SEED`, so the episodes a
checkpoint was picked on are not the ones it is scored on.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

import rundir
from envs.config import EnvConfig
from envs.wrappers import make_env
from eval import metrics
from eval.agreement import AgreementCounter
from eval.failures import TrajectoryFacts, failure_mode
from policies.oracle import Oracle

EVAL_SEED_BASE = rundir.SEED_OFFSETS["eval_base"]
VALIDATION_SEED = 0
"""Evaluation seed of the periodic held-out evaluation during training (its curve, and the
checkpoint kept in best/)."""
TEST_SEED = 1
"""Default evaluation seed of reports (`embodied eval`, `bench learn`, quickstart)."""


def episode_seed(seed: int, episode: int) -> int:
    """Reset seed of evaluation episode `episode` under evaluation seed `seed`."""
    return EVAL_SEED_BASE + seed * rundir.SEED_OFFSETS["eval_seed_stride"] + episode


class Agent(Protocol):
    """What a rollout drives: `reset(info)` per episode, `act(obs, info)` per step."""

    def reset(self, info: dict) -> None: ...

    def act(self, obs: Any, info: dict) -> Any: ...


class OracleAgent:
    """The privileged grid planner (reads `info`, never the image)."""

    name = "oracle"

    def __init__(self, continuous: bool):
        self.oracle = Oracle(continuous=continuous)

    def reset(self, info: dict) -> None:
        self.oracle.reset(info)

    def act(self, obs: Any, info: dict) -> Any:
        return self.oracle.act(info)


class RandomAgent:
    """Uniform random actions from a generator seeded per episode."""

    name = "random"

    def __init__(self, action_space, seed: int = 0):
        self.space = action_space
        self.seed = seed

    def reset(self, info: dict) -> None:
        # seeded by the episode's layout, so the same episode always gets the same actions
        stride = rundir.SEED_OFFSETS["random_agent_stride"]
        self.space.seed(self.seed * stride + int(info["scene"]["layout_seed"]))

    def act(self, obs: Any, info: dict) -> Any:
        return self.space.sample()


class PolicyAgent:
    """A loaded camera checkpoint acting on the observation alone."""

    name = "policy"

    def __init__(self, loaded, deterministic: bool = True):
        self.loaded = loaded
        self.deterministic = deterministic

    def reset(self, info: dict) -> None:
        self.loaded.reset()  # a recurrent policy starts every episode from the zero state

    def act(self, obs: Any, info: dict) -> Any:
        action = self.loaded.predict(obs, self.deterministic)
        return action if self.loaded.continuous else int(action)

    def recovering(self) -> bool:
        """Whether the action `act` returns next is a recovery drive, the drive that ends a
        loop of turns in place (`policies.actions.Memory.due`)."""
        memory = self.loaded.memory
        return memory is not None and bool(memory.due()[0])


@dataclass
class StepRecord:
    """One control step, as videos and overlays need it."""

    step: int
    action: Any
    reward: float
    distance: float
    success: bool
    collided: bool
    goal_in_view: bool
    """The observation after this step shows the goal (`CameraNavEnv.goal_in_view`)."""


@dataclass
class Episode:
    """One finished episode: the metric record plus, optionally, its frames."""

    record: dict[str, Any]
    steps: list[StepRecord] = field(default_factory=list)
    frames: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def make_eval_env(env_cfg: EnvConfig, continuous: bool, render: bool = False) -> gym.Env:
    """The env a policy is scored in: the one training uses (`envs.wrappers.make_env`, frame
    stack of `env_cfg.observation` included), with the top-down view when `render`."""
    return make_env(env_cfg, continuous, render_mode="rgb_array" if render else None)


def run_episode(env, agent: Agent, seed: int, episode: int, options: dict | None = None,
                keep_frames: bool = False, agreement: AgreementCounter | None = None
                ) -> Episode:
    """Run one episode to its end.

    The record carries the env's per-episode numbers, the episode's own ``spl`` and
    ``soft_spl`` (`metrics.episode_spl` / `episode_soft_spl`), the trajectory facts of
    `failures.TrajectoryFacts` and its ``failure_mode`` (None on success); with `agreement`,
    also how closely the agent followed the teacher (`eval.agreement`). For an agent that says
    when it drives a recovery (`PolicyAgent.recovering`), ``recovery_steps`` counts the steps
    taken by a recovery drive, ``recovery_contact_steps`` those of them in contact, and
    ``first_contact_in_recovery`` says whether the episode's first contact came on one; all
    are 0 / False for other agents.
    ``first_contact_bearing_deg`` says where on the robot that first contact was
    (`NavEnv.contact_bearing_deg`; None in an episode without contact), and, with `agreement`,
    ``first_contact_vs_teacher`` how the steps leading up to it differed from the teacher's
    (`AgreementCounter.lead_up`; None without contact or teacher).
    """
    obs, info = env.reset(seed=seed, options=options)
    agent.reset(info)
    if agreement is not None:
        agreement.reset(info)
    scene = info["scene"]
    start_distance = info["geodesic_distance"]
    total, steps, done = 0.0, [], False
    frames = []
    base = env.unwrapped
    in_view = base.goal_in_view()
    facts = TrajectoryFacts(info["pose"], start_distance, in_view)
    if keep_frames:
        frames.append((camera_rgb(obs, base.cfg.observation), base.render()))
    recovering = getattr(agent, "recovering", None)
    recovery_steps, recovery_contact = 0, 0
    first_contact_in_recovery, first_contact_bearing = None, None
    first_contact_vs_teacher = None
    while not done:
        in_recovery = bool(recovering()) if recovering is not None else False
        recovery_steps += in_recovery
        action = agent.act(obs, info)
        if agreement is not None:
            agreement.observe(info, in_view, action)
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        done = terminated or truncated
        in_view = base.goal_in_view()
        facts.update(info["pose"], info["geodesic_distance"], info["collided"], in_view)
        if info["collided"]:
            recovery_contact += in_recovery
            if first_contact_in_recovery is None:
                first_contact_in_recovery = in_recovery
                first_contact_bearing = base.contact_bearing_deg()
                if agreement is not None:
                    first_contact_vs_teacher = agreement.lead_up()
        steps.append(StepRecord(info["steps"], action, float(reward), info["distance"],
                                info["success"], info["collided"], in_view))
        if keep_frames:
            frames.append((camera_rgb(obs, base.cfg.observation), base.render()))
    record = {
        "episode": episode,
        "seed": seed,
        "success": bool(info["success"]),
        "path_length": float(info["path_length"]),
        "shortest_path_length": float(info["shortest_path_length"]),
        "start_distance": float(start_distance),
        "final_distance": float(info["geodesic_distance"]),
        "collisions": int(info["collisions"]),
        "steps": int(info["steps"]),
        "return": float(total),
        "recovery_steps": recovery_steps,
        "recovery_contact_steps": recovery_contact,
        "first_contact_in_recovery": bool(first_contact_in_recovery),
        "first_contact_bearing_deg": first_contact_bearing,
        "first_contact_vs_teacher": first_contact_vs_teacher,
    }
    record["spl"] = metrics.episode_spl(record)
    record["soft_spl"] = metrics.episode_soft_spl(record)
    record.update(facts.facts(timed_out=bool(truncated and not terminated)))
    record["failure_mode"] = failure_mode(record)
    if agreement is not None:
        record.update(agreement.facts())
    record["scene"] = scene
    return Episode(record, steps, frames)


def camera_rgb(obs: Any, obs_cfg) -> np.ndarray:
    """The newest camera frame as RGB (H, W, 3), whatever channels and stacking are on."""
    image = obs["image"] if isinstance(obs, dict) else obs
    per_frame = obs_cfg.image_channels
    frames = obs_cfg.frame_channels  # the previous command's channels come after
    newest = image[..., frames - per_frame:frames]
    if obs_cfg.camera:
        return np.ascontiguousarray(newest[..., :3])
    return np.repeat(newest[..., :1], 3, axis=2)  # depth or segmentation only: grey


def evaluate(env, agent: Agent, episodes: int, seed: int = 0, options: dict | None = None,
             progress: Callable[[int], None] | None = None,
             agreement: AgreementCounter | None = None) -> Iterator[dict[str, Any]]:
    """Yield one record per episode; an episode that raises is recorded with its error."""
    for k in range(episodes):
        s = episode_seed(seed, k)
        try:
            yield run_episode(env, agent, s, k, options, agreement=agreement).record
        except Exception as err:  # one broken episode must not end a 200-episode evaluation
            yield {"episode": k, "seed": s, "error": f"{type(err).__name__}: {err}",
                   "traceback": traceback.format_exc(limit=3)}
        if progress:
            progress(k + 1)
