"""Evaluation reports: a checkpoint beside the oracle and a random policy, and the gate.

Every policy in one report is scored on the same episodes: episode k resets the env with
`rollout.episode_seed(seed, k)`, so the scene (layout, colours, lighting, ...) of episode k is
the same for the checkpoint, the oracle and the random policy, and differences between their
rows come from the policies alone. Robustness sweeps build on the same pieces in
`eval.robustness`.

Files written (each atomically through `rundir`: a reader never sees half a file):
`episodes_<name>.jsonl` (one record per episode, errors included) and `summary.json`
(`metrics.summarize` per policy plus the SPL ratio and the setup).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

import rundir
from envs import ACTION_NAMES
from envs.config import EnvConfig, to_dict
from eval import metrics
from eval.agreement import AgreementCounter, TeacherSpec
from eval.rollout import Agent, OracleAgent, PolicyAgent, RandomAgent, evaluate, make_eval_env
from policies.actions import CONTINUOUS_DECISION, DECISION
from policies.checkpoint import CheckpointError, LoadedPolicy, load_checkpoint
from policies.threads import torch_threads

POLICY_NAMES = ("policy", "oracle", "random")
"""Policies a report can hold: the checkpoint, the privileged planner, uniform random actions."""

# --------------------------------------------------------------------------------------------
# setup


@dataclasses.dataclass
class ReportSetup:
    """What every policy of one report shares: the env config and how to act in it."""

    env_cfg: EnvConfig
    """The policy's training env on the report's split (its frame stack included)."""
    continuous: bool
    loaded: LoadedPolicy | None


def check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    """`policies` as a tuple of known, distinct names (`POLICY_NAMES`); ValueError otherwise."""
    names = tuple(policies)
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown or no policies {unknown or list(names)}; choose from "
                         f"{list(POLICY_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"policies {list(names)} name one policy twice")
    return names


def setup(target: str | os.PathLike[str] | None, split: str, policies: Sequence[str]
          ) -> ReportSetup:
    """Load the checkpoint when it is needed; without one, the default env with `split`."""
    if target is None:
        if "policy" in policies:
            raise CheckpointError("evaluating 'policy' needs a checkpoint: pass a .pt file or a "
                                  "run directory, or leave 'policy' out of the policies")
        return ReportSetup(EnvConfig(split=split), False, None)
    loaded = load_checkpoint(target)
    return ReportSetup(loaded.meta.env_config(split), loaded.continuous, loaded)


def _agent(name: str, setup: ReportSetup, env, seed: int) -> Agent:
    """A fresh agent per evaluation, so that the random policy's draws depend only on `seed`."""
    if name == "policy":
        return PolicyAgent(setup.loaded)
    if name == "oracle":
        return OracleAgent(setup.continuous)
    return RandomAgent(env.action_space, seed)


def run_policy(name: str, setup: ReportSetup, env, episodes: int, seed: int,
               options: dict | None, progress: bool, desc: str,
               teacher: TeacherSpec | None = None) -> list[dict[str, Any]]:
    """`episodes` records of policy `name` (error records included), with a progress bar;
    with `teacher`, every visited state is also labelled by it (`eval.agreement`)."""
    agent = _agent(name, setup, env, seed)
    counter = None if teacher is None else AgreementCounter(
        teacher.build(setup.continuous), None if setup.continuous else int(env.action_space.n))
    with tqdm(total=episodes, desc=desc, unit="ep", disable=not progress, leave=False) as bar:
        records = []
        for record in evaluate(env, agent, episodes, seed, options, agreement=counter):
            records.append(record)
            bar.update(1)
    return records


# --------------------------------------------------------------------------------------------
# the report


def spl_ratio(policy_spl: float | None, oracle_spl: float | None) -> float | None:
    """Policy SPL / oracle SPL; None when either is missing or the oracle scored 0."""
    if policy_spl is None or oracle_spl is None or oracle_spl <= 0:
        return None
    return float(policy_spl) / float(oracle_spl)


def evaluate_all(
    target: str | os.PathLike[str] | None,
    split: str = "heldout",
    episodes: int = 200,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    policies: Sequence[str] = POLICY_NAMES,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    teacher: TeacherSpec | None = None,
) -> dict[str, Any]:
    """Score the checkpoint `target`, the oracle and the random policy on the same episodes.

    `target` is a `.pt` file or a run directory (None is allowed when `policies` leaves out
    `policy`; the default `EnvConfig` is then used). The env is the checkpoint's training env
    with `split` set, and its frame stack is applied. `options` is passed to every `reset`
    (e.g. `{"strength": {"lighting": 2.0}}`). With `teacher`, the checkpoint's steps are also
    labelled by that camera-aware planner: its records carry `eval.agreement`'s fields and its
    summary a ``teacher`` entry; the report names the teacher under ``teacher`` (with the
    discrete actions' names, the confusion table's rows and columns).

    Returns `{name: metrics.summarize(records)}` for each evaluated policy, plus `policies`
    (their names), `spl_vs_oracle` (policy SPL / oracle SPL, or None), `split`, `episodes`,
    `seed`, `checkpoint` (path or None), `options`, `env` (the config used, as a dict) and
    `decision` (how the checkpoint's output became its action, `policies.actions.DECISION`).
    With `out_dir`, writes `episodes_<name>.jsonl` per policy and `summary.json` there.
    """
    names = check_policies(policies)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    prepared = setup(target, split, names)
    env = make_eval_env(prepared.env_cfg, prepared.continuous)
    with contextlib.closing(env), torch_threads(1):
        records = {name: run_policy(name, prepared, env, episodes, seed, options, progress, name,
                                    teacher if name == "policy" else None)
                   for name in names}
    summary: dict[str, Any] = {name: metrics.summarize(records[name], seed) for name in names}
    summary.update(
        policies=list(names),
        spl_vs_oracle=spl_ratio(summary.get("policy", {}).get("spl"),
                                summary.get("oracle", {}).get("spl")),
        split=split,
        episodes=episodes,
        seed=seed,
        checkpoint=str(prepared.loaded.path) if prepared.loaded else None,
        options=options,
        env=to_dict(prepared.env_cfg),
        decision=None if "policy" not in names else (
            CONTINUOUS_DECISION if prepared.continuous else DECISION),
        teacher=None if teacher is None or "policy" not in names else {
            **teacher.as_dict(), "actions": None if prepared.continuous else list(ACTION_NAMES)},
    )
    if out_dir is not None:
        out = Path(out_dir)
        for name in names:
            rundir.write_jsonl(out / rundir.episodes_file(name), records[name])
        rundir.write_json(out / rundir.SUMMARY_FILE, summary)
    return summary


def gate(summary: Mapping[str, Any], min_success: float, name: str = "policy") -> bool:
    """True when policy `name` of an `evaluate_all` summary succeeds at least `min_success`.

    A summary whose episodes all crashed (success rate None) fails the gate.
    """
    if not 0.0 <= min_success <= 1.0:
        raise ValueError(f"min_success is a success rate in [0, 1], got {min_success}")
    if name not in summary or not isinstance(summary[name], Mapping):
        raise ValueError(f"the summary holds no results for {name!r}; evaluate it first "
                         f"(policies present: {summary.get('policies')})")
    rate = summary[name].get("success_rate")
    return rate is not None and float(rate) >= min_success
