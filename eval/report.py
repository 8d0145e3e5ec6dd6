"""Evaluation reports: a checkpoint beside the oracle and a random policy, robustness sweeps, gates.

Every policy in one report is scored on the same episodes: episode k resets the env with
`rollout.episode_seed(seed, k)`, so the scene (layout, colours, lighting, ...) of episode k is
the same for the checkpoint, the oracle and the random policy, and differences between their
rows come from the policies alone.

Files written (each atomically: a reader never sees half a file):

- `evaluate_all`: `episodes_<name>.jsonl` (one record per episode, errors included) and
  `summary.json` (`metrics.summarize` per policy plus the SPL ratio and the setup).
- `sweep`: `sweep_<factor>.json` (one row per strength and policy), `sweep_<factor>.png`
  (success and SPL against strength with 95 % bands) and `sweep_<factor>_episodes.jsonl`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from envs.config import GROUPS, EnvConfig, from_dict, to_dict
from eval import metrics
from eval.rollout import Agent, OracleAgent, PolicyAgent, RandomAgent, evaluate, make_eval_env
from policies.checkpoint import CheckpointError, LoadedPolicy, load_checkpoint

POLICY_NAMES = ("policy", "oracle", "random")
"""Policies a report can hold: the checkpoint, the privileged planner, uniform random actions."""

SWEEP_FACTORS = ("all", *GROUPS)
"""`all` scales every randomization group together; a group name scales that group alone."""

SWEEP_METRICS = ("success_rate", "spl")
"""Metrics kept per sweep row (each with its `_ci95` interval)."""


# --------------------------------------------------------------------------------------------
# setup


def policy_env_config(loaded: LoadedPolicy, split: str, strength: float | None = None
                      ) -> EnvConfig:
    """The env the checkpoint was trained on, with `split` and (unless None) `strength` set.

    Keeps everything else (observation size, sensors, speeds, max_steps), since a policy is
    only defined on the observations it was trained with.
    """
    data = loaded.meta.get("env")
    if not isinstance(data, dict):
        raise CheckpointError(f"{loaded.path}: its meta has no 'env' config; re-save the "
                              "checkpoint with meta['env'] = envs.config.to_dict(env_config)")
    cfg = from_dict(EnvConfig, data, "env")
    changes: dict[str, Any] = {"split": split}
    if strength is not None:
        changes["strength"] = float(strength)
    return dataclasses.replace(cfg, **changes)


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the previous count.

    A rollout runs the network on one observation at a time, where extra threads only add
    synchronisation; with OpenMP spin-waiting on a busy machine two threads made each small
    forward pass ~30x slower than one.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclasses.dataclass
class _Setup:
    """What every policy of one report shares: the env config and how to act in it."""

    env_cfg: EnvConfig
    continuous: bool
    frame_stack: int
    loaded: LoadedPolicy | None


def _check_policies(policies: Sequence[str]) -> tuple[str, ...]:
    names = tuple(policies)
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown or not names:
        raise ValueError(f"unknown or no policies {unknown or list(names)}; choose from "
                         f"{list(POLICY_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"policies {list(names)} name one policy twice")
    return names


def _setup(target: str | os.PathLike[str] | None, split: str, policies: Sequence[str]
           ) -> _Setup:
    """Load the checkpoint when it is needed; without one, the default env with `split`."""
    if target is None:
        if "policy" in policies:
            raise CheckpointError("evaluating 'policy' needs a checkpoint: pass a .pt file or a "
                                  "run directory, or leave 'policy' out of the policies")
        return _Setup(EnvConfig(split=split), False, 1, None)
    loaded = load_checkpoint(target)
    return _Setup(policy_env_config(loaded, split), loaded.continuous,
                  int(loaded.meta.get("frame_stack", 1)), loaded)


def _agent(name: str, setup: _Setup, env, seed: int) -> Agent:
    """A fresh agent per evaluation, so that the random policy's draws depend only on `seed`."""
    if name == "policy":
        return PolicyAgent(setup.loaded)
    if name == "oracle":
        return OracleAgent(setup.continuous)
    return RandomAgent(env.action_space, seed)


def _run(name: str, setup: _Setup, env, episodes: int, seed: int, options: dict | None,
         progress: bool, desc: str) -> list[dict[str, Any]]:
    """`episodes` records of policy `name` (error records included), with a progress bar."""
    agent = _agent(name, setup, env, seed)
    with tqdm(total=episodes, desc=desc, unit="ep", disable=not progress, leave=False) as bar:
        records = []
        for record in evaluate(env, agent, episodes, seed, options):
            records.append(record)
            bar.update(1)
    return records


# --------------------------------------------------------------------------------------------
# files


def _plain(value: Any) -> Any:
    """`value` with numpy scalars/arrays as Python values and NaN/inf as None (strict JSON)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run `write(tmp)` on a hidden sibling of `path`, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    """UTF-8 text, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """`data` as indented strict JSON (NaN written as null), atomically."""
    text = json.dumps(_plain(data), indent=2, allow_nan=False) + "\n"
    return write_text(Path(path), text)


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Mapping[str, Any]]) -> Path:
    """One strict-JSON object per line, atomically."""
    lines = [json.dumps(_plain(r), allow_nan=False) + "\n" for r in records]
    return write_text(Path(path), "".join(lines))


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a `.jsonl` file written by `write_jsonl`."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
) -> dict[str, Any]:
    """Score the checkpoint `target`, the oracle and the random policy on the same episodes.

    `target` is a `.pt` file or a run directory (None is allowed when `policies` leaves out
    `policy`; the default `EnvConfig` is then used). The env is the checkpoint's training env
    with `split` set, and its frame stack is applied. `options` is passed to every `reset`
    (e.g. `{"strength": {"lighting": 2.0}}`).

    Returns `{name: metrics.summarize(records)}` for each evaluated policy, plus `policies`
    (their names), `spl_vs_oracle` (policy SPL / oracle SPL, or None), `split`, `episodes`,
    `seed`, `checkpoint` (path or None), `options` and `env` (the config used, as a dict).
    With `out_dir`, writes `episodes_<name>.jsonl` per policy and `summary.json` there.
    """
    names = _check_policies(policies)
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    setup = _setup(target, split, names)
    env = make_eval_env(setup.env_cfg, setup.continuous, setup.frame_stack)
    with contextlib.closing(env), torch_threads(1):
        records = {name: _run(name, setup, env, episodes, seed, options, progress, name)
                   for name in names}
    summary: dict[str, Any] = {name: metrics.summarize(records[name], seed) for name in names}
    summary.update(
        policies=list(names),
        spl_vs_oracle=spl_ratio(summary.get("policy", {}).get("spl"),
                                summary.get("oracle", {}).get("spl")),
        split=split,
        episodes=episodes,
        seed=seed,
        checkpoint=str(setup.loaded.path) if setup.loaded else None,
        options=options,
        env=to_dict(setup.env_cfg),
    )
    if out_dir is not None:
        out = Path(out_dir)
        for name in names:
            write_jsonl(out / f"episodes_{name}.jsonl", records[name])
        write_json(out / "summary.json", summary)
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


# --------------------------------------------------------------------------------------------
# robustness sweeps


def parse_sweep(text: str) -> tuple[str, tuple[float, ...]]:
    """`"strength=0,0.5,1"` -> `("all", (0.0, 0.5, 1.0))`; `"lighting=0,1,2"` -> one group.

    The left side is `strength` or `all` (every group) or a group from `envs.config.GROUPS`;
    the right side is a comma-separated list of strengths >= 0.
    """
    usage = (f"write FACTOR=S1,S2,... with FACTOR one of strength, {', '.join(SWEEP_FACTORS)} "
             "and strengths >= 0, e.g. strength=0,0.5,1 or lighting=0,1,2")
    factor, sep, values = text.partition("=")
    factor = factor.strip()
    if not sep or not factor:
        raise ValueError(f"bad sweep {text!r}: {usage}")
    factor = "all" if factor == "strength" else factor
    if factor not in SWEEP_FACTORS:
        raise ValueError(f"bad sweep {text!r}: unknown factor {factor!r}; {usage}")
    try:
        strengths = tuple(float(v) for v in values.split(","))
    except ValueError:
        raise ValueError(f"bad sweep {text!r}: strengths must be numbers; {usage}") from None
    if not all(math.isfinite(s) and s >= 0 for s in strengths):
        raise ValueError(f"bad sweep {text!r}: strengths must be finite and >= 0; {usage}")
    return factor, strengths


def strength_option(factor: str, strength: float) -> float | dict[str, float]:
    """The `reset(options={"strength": ...})` value that scales `factor` (others at 0)."""
    if factor == "all":
        return float(strength)
    if factor not in GROUPS:
        raise ValueError(f"unknown sweep factor {factor!r}; use one of {list(SWEEP_FACTORS)}")
    return {factor: float(strength)}


def sweep_rows(records: Mapping[tuple[float, str], Sequence[Mapping[str, Any]]], seed: int = 0
               ) -> list[dict[str, Any]]:
    """One row per (strength, policy): episodes, errors and `SWEEP_METRICS` with their CIs."""
    rows = []
    for (strength, name), recs in records.items():
        s = metrics.summarize(recs, seed)
        row: dict[str, Any] = {"strength": strength, "policy": name,
                               "episodes": s["episodes"], "errors": s["errors"]}
        for m in SWEEP_METRICS:
            row[m] = s[m]
            row[f"{m}_ci95"] = s[f"{m}_ci95"]
        rows.append(row)
    return rows


def plot_sweep(rows: Sequence[Mapping[str, Any]], factor: str, path: str | os.PathLike[str]
               ) -> Path:
    """Success rate and SPL against strength, one line per policy with its 95 % band (PNG)."""
    # The figure is drawn on an explicit Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(SWEEP_METRICS), sharex=True)
    names = list(dict.fromkeys(r["policy"] for r in rows))
    for ax, m in zip(axes, SWEEP_METRICS):
        for name in names:
            mine = sorted((r for r in rows if r["policy"] == name), key=lambda r: r["strength"])
            x = [r["strength"] for r in mine]
            y = [np.nan if r[m] is None else r[m] for r in mine]
            lo = [np.nan if r[f"{m}_ci95"][0] is None else r[f"{m}_ci95"][0] for r in mine]
            hi = [np.nan if r[f"{m}_ci95"][1] is None else r[f"{m}_ci95"][1] for r in mine]
            (line,) = ax.plot(x, y, marker="o", label=name)
            ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel(f"randomization strength ({factor})")
        ax.set_ylabel(m.replace("_", " "))
        ax.set_ylim(-0.03, 1.03)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    fig.suptitle(f"Robustness sweep: {factor}")
    return atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=100))


def sweep(
    target: str | os.PathLike[str] | None,
    factor: str = "all",
    strengths: Sequence[float] = (0.0, 0.5, 1.0, 1.5, 2.0),
    split: str = "heldout",
    episodes: int = 50,
    seed: int = 0,
    out_dir: str | os.PathLike[str] | None = None,
    policies: Sequence[str] = ("policy", "oracle"),
    progress: bool = True,
) -> dict[str, Any]:
    """Success and SPL as one randomization factor (or all of them) grows stronger.

    `factor` is `all` (every group scaled to the strength) or one group of
    `envs.config.GROUPS` (that group scaled, every other group at 0, so its effect is seen
    alone). Each strength uses the same episode seeds, so the layouts repeat across strengths
    and only the swept factor changes. Returns `{factor, strengths, split, episodes, seed,
    checkpoint, env, rows}` with one row per (strength, policy), see `sweep_rows`. With
    `out_dir`, writes `sweep_<factor>.json` (that dict), `sweep_<factor>.png` and
    `sweep_<factor>_episodes.jsonl` (every record, tagged with `strength` and `policy`).
    """
    names = _check_policies(policies)
    if factor not in SWEEP_FACTORS:
        raise ValueError(f"unknown sweep factor {factor!r}; use one of {list(SWEEP_FACTORS)}")
    levels = tuple(float(s) for s in strengths)
    if not levels or any(not math.isfinite(s) or s < 0 for s in levels):
        raise ValueError(f"strengths must be a non-empty list of numbers >= 0, got {strengths}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    setup = _setup(target, split, names)
    env = make_eval_env(setup.env_cfg, setup.continuous, setup.frame_stack)
    records: dict[tuple[float, str], list[dict[str, Any]]] = {}
    with contextlib.closing(env), torch_threads(1):
        for s in levels:
            options = {"strength": strength_option(factor, s)}
            for name in names:
                records[(s, name)] = _run(name, setup, env, episodes, seed, options, progress,
                                          f"{factor}={s:g} {name}")
    data: dict[str, Any] = {
        "factor": factor, "strengths": list(levels), "split": split, "episodes": episodes,
        "seed": seed, "checkpoint": str(setup.loaded.path) if setup.loaded else None,
        "env": to_dict(setup.env_cfg), "rows": sweep_rows(records, seed),
    }
    if out_dir is not None:
        out = Path(out_dir)
        write_json(out / f"sweep_{factor}.json", data)
        plot_sweep(data["rows"], factor, out / f"sweep_{factor}.png")
        write_jsonl(out / f"sweep_{factor}_episodes.jsonl",
                    ({"strength": s, "policy": name, **r}
                     for (s, name), recs in records.items() for r in recs))
    return data
