"""What a sweep is asked to run: the grid, the configurations, seeds and resources of its trials.

`make_plan` validates a `SweepSpec` (every grid value applied to the base config, resources
checked) and resolves it into a JSON plan that the trials, the report and `--resume` read, so
anything wrong fails with one line before a trial starts.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import rundir
from envs.config import ConfigError, to_dict
from training.config import TrainConfig, load_config, set_dotted

PLAN_FILE = rundir.SWEEP_PLAN_FILE
TRIALS_DIR = rundir.SWEEP_TRIALS_DIR
TUNE_DIR = "tune"
OUTCOMES_FILE = "sweep_trials.json"
SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("fifo", "asha")
VAL_SUCCESS, VAL_SPL = "val_success", "val_spl"
"""Names of the metrics a trial reports to Tune (held-out validation, `eval.split`)."""


# ------------------------------------------------------------------------------ the grid


@dataclass(frozen=True)
class Dimension:
    """One swept setting: a list of values, or a range `LOW..HIGH` (`log:LOW..HIGH`) that
    only random or Optuna search can sample."""

    key: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    log: bool = False

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def integer(self) -> bool:
        """Both ends written as integers (and not log): an integer setting, both ends included."""
        return self.is_range and not self.log and isinstance(self.low, int) \
            and isinstance(self.high, int)

    def sample(self, rng: np.random.Generator) -> Any:
        if not self.is_range:
            return self.values[int(rng.integers(len(self.values)))]
        if self.integer:
            return int(rng.integers(int(self.low), int(self.high) + 1))
        if self.log:
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return float(rng.uniform(self.low, self.high))

    def tune_domain(self) -> Any:
        from ray import tune

        if not self.is_range:
            return tune.choice(list(self.values))
        if self.integer:
            return tune.randint(int(self.low), int(self.high) + 1)
        return (tune.loguniform if self.log else tune.uniform)(float(self.low), float(self.high))


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so `arch.net_arch=[64,64],[128]` is two values."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def parse_grid(items: list[str]) -> tuple[Dimension, ...]:
    """`--grid` arguments -> dimensions; a malformed one is a one-line ConfigError."""
    dims: list[Dimension] = []
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--grid {item!r}: write it as key.sub=v1,v2 (or key=LOW..HIGH)")
        if key == "seed":
            raise ConfigError("--grid seed=...: seeds are not a hyper-parameter; use --seeds N")
        if key in {d.key for d in dims}:
            raise ConfigError(f"--grid {key}: given twice; list every value in one --grid")
        body = raw.strip()
        log = body.startswith("log:")
        if log:
            body = body[4:]
        if ".." in body and "," not in body:
            low_text, _, high_text = body.partition("..")
            try:
                low, high = _scalar(low_text), _scalar(high_text)
            except yaml.YAMLError:
                low = high = None
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                       for v in (low, high)) or not low < high or (log and low <= 0):
                raise ConfigError(f"--grid {item!r}: a range is LOW..HIGH with numbers LOW < "
                                  "HIGH (and LOW > 0 for log:)")
            dims.append(Dimension(key, low=low, high=high, log=log))
            continue
        if log:
            raise ConfigError(f"--grid {item!r}: log: applies to a range, e.g. log:1e-4..1e-3")
        texts = [t for t in _split_values(body) if t]
        if not texts:
            raise ConfigError(f"--grid {key}: no values; list them as {key}=v1,v2")
        try:
            values = tuple(_scalar(t) for t in texts)
        except yaml.YAMLError:
            raise ConfigError(f"--grid {key}: cannot parse the values {body!r}") from None
        dims.append(Dimension(key, values=values))
    return tuple(dims)


# ------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class SweepSpec:
    """What `embodied sweep` was asked for (everything but where it runs)."""

    config: str = "default"
    """Preset name or YAML path of the base config."""
    overrides: tuple[str, ...] = ()
    """`key.sub=value` changes applied to the base config of every trial."""
    seeds: int = 3
    """Training seeds per configuration: the base config's seed, seed + 1, ..."""
    grid: tuple[Dimension, ...] = ()
    search: str = "grid"
    """grid (every combination), random or optuna (--samples configurations)."""
    samples: int = 0
    """Configurations drawn by random or Optuna search."""
    scheduler: str = "fifo"
    """fifo (every trial runs to the end) or asha (weak trials stop early)."""
    cpus_per_trial: int | None = None
    """CPUs a trial asks for (default: n_envs with subprocess envs, else 1)."""
    gpus_per_trial: float = 0.0
    test_episodes: int = 100
    """Held-out test episodes that score each trial's policy (`rundir.POLICY_DIRS`) at the end."""
    search_seed: int = 0
    """Seeds random and Optuna search, so a sweep draws the same configurations again."""


def _scalar(text: str) -> Any:
    """A YAML value, with `5e-4` read as the number YAML 1.1 leaves as a string."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def yaml_value(value: Any) -> str:
    """`value` as an override's right-hand side that YAML reads back as the same value
    (PyYAML reads `1e-05` as a string; its own dump writes `1.0e-05`)."""
    return yaml.safe_dump(value, default_flow_style=True, width=1_000).strip() \
        .removesuffix("...").strip()


def trial_config(base: dict[str, Any], params: dict[str, Any], seed: int,
                 cpus: int | None = None) -> TrainConfig:
    """The config of one trial: `base` with `params` (dotted keys) and `seed`; torch threads
    capped at the trial's `cpus` so a trial never uses more cores than it asked for."""
    data = copy.deepcopy(base)
    for key, value in {**params, "seed": int(seed)}.items():
        set_dotted(data, key, value)
    cfg = load_config(None, [], base=data)
    if cpus is None:
        return cfg
    threads = [f"torch_threads_collect={min(cfg.torch_threads_collect, cpus)}",
               f"torch_threads_train={min(cfg.torch_threads_train, cpus)}"]
    return load_config(None, threads, base=to_dict(cfg))


def trial_cpus(cfg: TrainConfig, asked: int | None) -> int:
    """CPUs a trial needs: one per subprocess env, at least what `--cpus-per-trial` gives."""
    need = cfg.n_envs if cfg.vec_env == "subproc" else 1
    if asked is not None and asked < need:
        raise ConfigError(f"--cpus-per-trial {asked}: a trial steps {cfg.n_envs} subprocess "
                          f"envs, one process each; pass --cpus-per-trial {need} or set "
                          f"n_envs={asked} (or vec_env=dummy)")
    return asked if asked is not None else need


def total_timesteps(cfg: TrainConfig) -> int:
    if cfg.method == "ppo":
        return cfg.ppo.total_timesteps
    return cfg.distill.total_timesteps + cfg.finetune.timesteps


def config_id(params: dict[str, Any]) -> str:
    """A short stable name for a sampled configuration (Optuna's are not known in advance)."""
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()
    return f"o{digest[:6]}"


def make_plan(spec: SweepSpec) -> dict[str, Any]:
    """Validate `spec` and resolve it into the JSON plan every trial and `--resume` read.

    Every value of every dimension is applied to the base config here, so an unknown key or a
    bad value fails with one line before anything starts.
    """
    if spec.search not in SEARCHES:
        raise ConfigError(f"--search {spec.search}: use one of {', '.join(SEARCHES)}")
    if spec.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {spec.scheduler}: use one of {', '.join(SCHEDULERS)}")
    if spec.seeds < 1 or spec.test_episodes < 1:
        raise ConfigError("--seeds and --test-episodes must be >= 1")
    if spec.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial {spec.gpus_per_trial}: must be >= 0")
    if spec.search == "grid" and spec.samples:
        raise ConfigError("--samples draws configurations for --search random|optuna; a grid "
                          "runs every combination")
    if spec.search != "grid" and spec.samples < 1:
        raise ConfigError(f"--search {spec.search}: say how many configurations with --samples N")
    if spec.search != "grid" and not spec.grid:
        raise ConfigError(f"--search {spec.search}: give the space to search with --grid "
                          "key=v1,v2 or key=LOW..HIGH")
    ranges = [d.key for d in spec.grid if d.is_range]
    if spec.search == "grid" and ranges:
        raise ConfigError(f"--grid {ranges[0]}=LOW..HIGH is a range: sample it with --search "
                          "random|optuna --samples N, or list values")
    base_cfg = load_config(spec.config, list(spec.overrides))
    base = to_dict(base_cfg)
    for dim in spec.grid:  # every value (or both ends of a range) must make a valid config
        for value in dim.values or (dim.low, dim.high):
            try:
                trial_config(base, {dim.key: value}, base_cfg.seed)
            except ConfigError as err:
                raise ConfigError(f"--grid {dim.key}={value}: {err}") from None
    if spec.search == "grid":
        combos = [dict(zip([d.key for d in spec.grid], values))
                  for values in itertools.product(*[d.values for d in spec.grid])]
    elif spec.search == "random":
        rng = np.random.default_rng(spec.search_seed)
        combos = [{d.key: d.sample(rng) for d in spec.grid} for _ in range(spec.samples)]
    else:
        combos = []  # proposed by Optuna while the sweep runs
    configurations = [{"config_id": f"c{i}", "params": p} for i, p in enumerate(combos)]
    cpus = 1
    for params in [c["params"] for c in configurations] or [{}]:
        cpus = max(cpus, trial_cpus(trial_config(base, params, base_cfg.seed),
                                    spec.cpus_per_trial))
    for dim in spec.grid if spec.search == "optuna" else ():
        for value in dim.values or (dim.low, dim.high):
            cpus = max(cpus, trial_cpus(trial_config(base, {dim.key: value}, base_cfg.seed),
                                        spec.cpus_per_trial))
    if spec.scheduler == "asha" and base_cfg.eval.every_timesteps <= 0:
        raise ConfigError("--scheduler asha stops trials at periodic evaluations: set "
                          "eval.every_timesteps > 0")
    return {"spec": {**asdict(spec), "grid": [asdict(d) for d in spec.grid]},
            "base": base, "seeds": [base_cfg.seed + i for i in range(spec.seeds)],
            "configurations": configurations, "max_cpus_per_trial": cpus,
            "max_timesteps": total_timesteps(base_cfg),
            "eval_every_timesteps": base_cfg.eval.every_timesteps}


def spec_from_plan(plan: dict[str, Any]) -> SweepSpec:
    data = dict(plan["spec"])
    data["grid"] = tuple(Dimension(**{**d, "values": tuple(d["values"])}) for d in data["grid"])
    data["overrides"] = tuple(data["overrides"])
    return SweepSpec(**data)


def trial_name(cid: str, seed: int) -> str:
    return f"{cid}_s{seed}"


def trial_dir(out: Path, cid: str, seed: int) -> Path:
    return Path(out) / TRIALS_DIR / trial_name(cid, seed)


def trial_identity(params: dict[str, Any], plan: dict[str, Any]) -> tuple[str, dict, int]:
    """(config id, swept settings, seed) of a trial from the parameters Tune gave it."""
    if "variant" in params:
        return params["variant"]["config_id"], params["variant"]["params"], int(params["seed"])
    from ray.tune.search.repeater import TRIAL_INDEX

    settings = dict(params["params"])
    return config_id(settings), settings, plan["seeds"][int(params[TRIAL_INDEX])]


def trial_resources(params: dict[str, Any], plan: dict[str, Any]) -> dict[str, float]:
    """What one trial asks Ray for (called by Tune with the trial's parameters)."""
    _, settings, seed = trial_identity(params, plan)
    spec = plan["spec"]
    cpus = trial_cpus(trial_config(plan["base"], settings, seed), spec["cpus_per_trial"])
    return {"cpu": cpus, "gpu": spec["gpus_per_trial"]}
