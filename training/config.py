"""Training configuration: one frozen dataclass tree, filled from YAML presets and overrides.

`embodied train --config quickstart env.strength=1.5 ppo.learning_rate=1e-4` loads
`training/configs/quickstart.yaml`, applies the dotted overrides, and validates everything;
an unknown key or a bad value fails with one line naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import rundir
from envs.config import ConfigError, EnvConfig, from_dict
from policies.metadata import ArchSpec
from policies.oracle import SEARCHES

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
METHODS = ("distill", "ppo")
ROLLOUT_DECISIONS = ("argmax", "drive_or_turn")


@dataclass(frozen=True)
class ArchConfig:
    """The camera policy network."""

    features_dim: int = 256
    """CNN output features."""
    channels: tuple[int, int, int] = (32, 64, 64)
    """Channels of the three conv layers."""
    net_arch: tuple[int, ...] = (128,)
    """Hidden layers of the policy and value heads."""
    lstm_hidden: int = 0
    """Width of an LSTM between the CNN and the actor's MLP (sb3-contrib's recurrent policy):
    a student with memory of what it saw earlier in the episode. 0: a feed-forward student.
    Distillation only (pixel PPO and the fine-tune train feed-forward networks)."""


@dataclass(frozen=True)
class PPOConfig:
    """stable-baselines3 PPO (pixel PPO, the PPO teacher, and the optional fine-tune)."""

    total_timesteps: int = 300_000
    """Environment steps for method=ppo."""
    n_steps: int = 256
    """Rollout length per env between updates."""
    batch_size: int = 256
    """Minibatch size."""
    n_epochs: int = 4
    """Passes over each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate (linearly decayed to 0)."""
    gamma: float = 0.99
    """Discount."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO clip range."""
    ent_coef: float = 0.01
    """Entropy bonus."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient clipping."""


@dataclass(frozen=True)
class DistillConfig:
    """Teacher -> camera student by DAgger on the student's own visits (Learning by Cheating)."""

    teacher: str = "oracle"
    """oracle (the privileged grid planner) or ppo (PPO on privileged state, no rendering)."""
    teacher_clearance_m: float = 0.0
    """Margin (m) the oracle teacher's paths keep from obstacles and walls where the layout
    allows (`envs.grid.clearance_cost`); 0 plans the shortest path, as the oracle reference."""
    teacher_search: str = "left"
    """How the oracle teacher turns while the goal is out of the camera's view and its plan
    calls for turning in place (`policies.oracle.Oracle`): left (always left, while the goal
    is outside 0.8 of the field of view) or continue (on while the image shows no goal, in the
    direction the robot is already rotating, else the plan's)."""
    teacher_keep_goal_in_view: bool = False
    """While the image shows the goal and the oracle teacher's plan would turn it out of view,
    steer along a heading that keeps the goal in view, still gains on the plan's distance and
    keeps the plan's clearance, where one exists (`policies.oracle.Oracle`,
    keep_goal_in_view)."""
    rollout_decision: str = "argmax"
    """How a discrete student picks its own actions while it drives DAgger's rollouts: argmax
    (its likeliest action), or drive_or_turn (`policies.actions.decide`, as evaluation and
    deployment act), so the states it visits and gets labelled are the ones it will meet."""
    teacher_timesteps: int = 150_000
    """Environment steps for a PPO teacher."""
    total_timesteps: int = 120_000
    """Camera frames the student collects in total."""
    steps_per_iteration: int = 4_000
    """Frames collected per DAgger iteration (split over the envs)."""
    expert_iterations: int = 2
    """Leading iterations driven entirely by the teacher (beta = 1)."""
    beta_decay_iterations: int = 8
    """Iterations over which the teacher's share of executed actions falls from 1 to 0."""
    grad_steps_per_iteration: int = 300
    """Gradient steps after each iteration."""
    batch_size: int = 256
    """Minibatch size."""
    learning_rate: float = 5e-4
    """Adam learning rate at the start."""
    lr_final_fraction: float = 0.1
    """Learning rate at the end of the run, as a fraction of the start (linear decay over
    total_timesteps or time_budget_s, whichever ends first)."""
    buffer_size: int = 120_000
    """Aggregated frames kept (oldest dropped)."""
    balance_actions: bool = True
    """Weight the discrete imitation loss by 1/frequency^p of each action in the buffer (p = 1/2
    unless balance_power_final says otherwise)."""
    balance_power_final: float = 0.5
    """With balance_actions, p moves linearly from 1/2 at the start to this value at the end
    of the run (as the learning rate decays). 0.5: 1/sqrt weighting throughout; 0: the
    weighting fades out, so the early iterations get the balanced start that keeps a seed from
    stalling on the most common label and the late ones fit the labels as often as the teacher
    gives them; 1: it grows to inverse frequency."""
    aux_weight: float = 0.0
    """Weight of an auxiliary loss (0 = off): a linear head on the student's CNN features, used
    only while training, predicts the privileged state around the robot that the camera only
    shows (`training.experts.auxiliary_target`: lidar ranges, the goal's and the plan's next
    waypoint's bearing, the goal's distance), so the features have to encode how far the
    obstacles are and where the goal lies. Feed-forward students only."""
    near_weight: float = 0.0
    """Extra weight (0 = off) of the imitation loss on frames whose nearest obstacle or wall
    is within `near_range_m` of the robot's edge (its lidar, read from the auxiliary target,
    so `aux_weight` > 0): each such frame counts 1 + near_weight times. Those are the frames
    where copying the teacher's label decides between passing an obstacle and touching it."""
    group_weight: float = 0.0
    """Weight (0 = off) of a second discrete imitation term: the negative log of the
    probability the student puts on the teacher's group of actions, driving (forward,
    forward-left, forward-right) or turning in place, summed within the group. Deployment
    picks the group first (`policies.actions.decide`), and the commonest step up to a contact
    is a drive where the teacher turns in place, a mistake per-action cross-entropy prices
    no higher than a forward-left for a forward-right."""
    drive_side_weight: float = 0.0
    """Weight (0 = off) of a discrete imitation term on frames whose teacher turns in place:
    which drive the student would take there, among the driving actions alone, should arc the
    way the teacher turns (`distill.drive_side_nll`). It is the drive deployment takes on a
    recovery drive after a full turn in place, where plain cross-entropy teaches nothing. Over
    3 seeds with `drive_side_from="plan"` it lost on three test sets (more contact, less
    success; the README's routes table), so it is off by default."""
    drive_side_from: str = "turn"
    """Which drive `drive_side_weight` teaches: "turn", the one arcing the way the teacher
    turns; "plan", the one arcing towards the plan's next waypoint (read from the auxiliary
    target, so it needs `aux_weight` > 0), which differs where the teacher searches for a goal
    out of view by always turning left."""
    near_range_m: float = 0.25
    """Gap (m) between the robot's edge and its nearest obstacle or wall under which a frame
    counts as near (`near_weight`)."""
    augment_shift_px: int = 4
    """Random-shift augmentation (pixels, 0 = off) for robustness to unseen appearance."""
    augment_shift_horizontal: bool = True
    """Whether the random shift also moves images sideways. A sideways shift is a turn of the
    camera (4 px of the 64 px image is about 11 degrees at the centre of a 115-degree lens)
    under an unchanged label, so it also teaches the student to ignore where an obstacle's edge
    sits; off, images move up and down only."""
    train_while_collecting: bool = True
    """Fit the student in a second thread while the envs collect the next iteration's frames
    with a frozen copy of it, instead of taking turns: about 1.3x the frames and gradient steps
    per wall-clock minute on 2 cores (`embodied bench train`), for a driving policy one
    iteration behind (an iteration is `steps_per_iteration` frames). The last iteration's
    frames are collected but not fitted."""
    augment_colour: bool = True
    """Colour augmentation that keeps the red goal red (see distill.colour_jitter); applies
    when the camera frame is RGB only (no depth or segmentation channels)."""
    sequence_length: int = 32
    """Recurrent student (`arch.lstm_hidden > 0`): consecutive frames of one env per training
    sequence (truncated backpropagation through time); batch_size // sequence_length
    sequences per gradient step."""
    burn_in: int = 8
    """Recurrent student: leading frames of each sequence that only warm up the LSTM's state
    from zero and carry no loss (a sequence starts mid-episode with no stored state)."""


@dataclass(frozen=True)
class FinetuneConfig:
    """PPO fine-tuning of the distilled student on the task reward (`training.finetune`)."""

    timesteps: int = 0
    """PPO steps after distillation (0 = no fine-tuning)."""
    budget_share: float = 0.3
    """With `time_budget_s`, the share of the budget kept for fine-tuning: distillation stops
    at the rest."""
    learning_rate: float = 1e-4
    """Adam learning rate of the fine-tune (decays linearly to 0)."""
    ent_coef: float = 0.0
    """Entropy bonus; the student's own action distribution is exploration enough."""
    train_features: bool = False
    """Whether PPO and the imitation steps also move the CNN the actor and critic share. Off,
    the CNN stays as distilled and only the actor and value heads learn: the value loss, large
    while the critic is young, otherwise reshapes the features the actor reads."""
    critic_warmup_rollouts: int = 3
    """Rollouts during which only the value head learns: the student's actor stays as
    distilled until the critic's advantages mean something."""
    teacher_steps: int = 20
    """Imitation steps toward the teacher's labels of the states just visited, after each
    rollout once the critic is warm (0 = pure PPO): keeps the student from forgetting what
    distillation taught while the reward reshapes it."""
    teacher_batch_size: int = 256
    """Minibatch of those imitation steps."""


@dataclass(frozen=True)
class EvalDuringTraining:
    """Periodic held-out evaluation while training."""

    every_timesteps: int = 20_000
    """Evaluate after this many env steps (0 = only at the end)."""
    episodes: int = 30
    """Episodes per evaluation."""
    split: str = "heldout"
    """Split evaluated."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run."""

    method: str = "distill"
    """distill (teacher -> camera student, fast) or ppo (pixel PPO from reward)."""
    continuous: bool = False
    """Train CameraNavContinuous-v0: (linear, angular) velocity actions in [-1, 1] instead of
    the five discrete ones. `env.continuous` is read as this key (see CONTINUOUS_KEY)."""
    seed: int = 0
    """Seeds torch and the training envs (env i gets seed + i)."""
    n_envs: int = 4
    """Parallel environments."""
    vec_env: str = "subproc"
    """subproc (one process per env) or dummy (all in this process)."""
    device: str = "auto"
    """auto, cpu or cuda (the learner; envs always run on the CPU)."""
    torch_threads_collect: int = 1
    """Torch threads while envs step (1 leaves the cores to the renderers)."""
    torch_threads_train: int = 2
    """Torch threads during gradient updates."""
    checkpoint_every_timesteps: int = 20_000
    """Periodic checkpoint interval (env steps)."""
    time_budget_s: float = 0.0
    """Stop after this much wall-clock training time, seconds (0 = no limit)."""
    env: EnvConfig = field(default_factory=EnvConfig)
    arch: ArchConfig = field(default_factory=ArchConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalDuringTraining = field(default_factory=EvalDuringTraining)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method: unknown method {self.method!r}; use one of {METHODS}")
        if self.distill.teacher not in ("oracle", "ppo"):
            raise ConfigError(f"distill.teacher: {self.distill.teacher!r}; use oracle or ppo")
        if self.distill.teacher_search not in SEARCHES:
            raise ConfigError(f"distill.teacher_search: {self.distill.teacher_search!r}; use "
                              f"one of {', '.join(SEARCHES)}")
        if self.distill.rollout_decision not in ROLLOUT_DECISIONS:
            raise ConfigError(f"distill.rollout_decision: {self.distill.rollout_decision!r}; "
                              f"use one of {', '.join(ROLLOUT_DECISIONS)}")
        if not 0.0 <= self.distill.teacher_clearance_m <= 1.0:
            raise ConfigError(f"distill.teacher_clearance_m: {self.distill.teacher_clearance_m}"
                              " is outside [0, 1] m; the presets' value is in"
                              " training/configs/default.yaml")
        if self.vec_env not in ("subproc", "dummy"):
            raise ConfigError(f"vec_env: {self.vec_env!r}; use subproc or dummy")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device: {self.device!r}; use auto, cpu or cuda")
        if self.eval.split not in ("train", "heldout"):
            raise ConfigError(f"eval.split: {self.eval.split!r}; use train or heldout")
        positive = {"n_envs": self.n_envs,
                    "torch_threads_collect": self.torch_threads_collect,
                    "torch_threads_train": self.torch_threads_train,
                    "ppo.total_timesteps": self.ppo.total_timesteps,
                    "ppo.n_steps": self.ppo.n_steps, "ppo.batch_size": self.ppo.batch_size,
                    "ppo.n_epochs": self.ppo.n_epochs, "ppo.learning_rate": self.ppo.learning_rate,
                    "distill.total_timesteps": self.distill.total_timesteps,
                    "distill.steps_per_iteration": self.distill.steps_per_iteration,
                    "distill.batch_size": self.distill.batch_size,
                    "distill.buffer_size": self.distill.buffer_size,
                    "distill.learning_rate": self.distill.learning_rate,
                    "eval.episodes": self.eval.episodes,
                    "checkpoint_every_timesteps": self.checkpoint_every_timesteps}
        for name, value in positive.items():
            if not value > 0:
                raise ConfigError(f"{name}: must be > 0, got {value}")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self.ppo, name)
            if not 0 < value <= 1:
                raise ConfigError(f"ppo.{name}: must be in (0, 1], got {value}")
        if not 0 <= self.distill.lr_final_fraction <= 1:
            raise ConfigError("distill.lr_final_fraction: must be in [0, 1], got "
                              f"{self.distill.lr_final_fraction}")
        f = self.finetune
        if f.timesteps < 0 or f.critic_warmup_rollouts < 0 or f.teacher_steps < 0:
            raise ConfigError("finetune.timesteps, critic_warmup_rollouts and teacher_steps "
                              "must be >= 0")
        if not 0.0 < f.budget_share < 1.0 or not f.learning_rate > 0 or \
                f.teacher_batch_size < 1 or f.ent_coef < 0:
            raise ConfigError("finetune: budget_share must be in (0, 1), learning_rate > 0, "
                              "teacher_batch_size >= 1 and ent_coef >= 0")
        if self.arch.lstm_hidden < 0:
            raise ConfigError("arch.lstm_hidden: must be >= 0 (0 = feed-forward)")
        if self.arch.lstm_hidden and (self.method != "distill" or self.finetune.timesteps):
            raise ConfigError("arch.lstm_hidden: a recurrent student is trained by distillation "
                              "only; use method=distill and finetune.timesteps=0, or "
                              "arch.lstm_hidden=0")
        d = self.distill
        # Sequence windows only exist for a recurrent student; a feed-forward one samples frames.
        if self.arch.lstm_hidden and not 0 <= d.burn_in < d.sequence_length <= d.batch_size:
            raise ConfigError("distill: a recurrent student needs 0 <= burn_in < "
                              "sequence_length <= batch_size, got "
                              f"{d.burn_in}, {d.sequence_length}, {d.batch_size}")
        if not 0.0 <= self.distill.balance_power_final <= 1.0:
            raise ConfigError("distill.balance_power_final: must be in [0, 1] (0.5 = 1/sqrt "
                              f"weighting throughout), got {self.distill.balance_power_final}")
        if self.distill.aux_weight < 0:
            raise ConfigError("distill.aux_weight: must be >= 0 (0 = no auxiliary loss), got "
                              f"{self.distill.aux_weight}")
        if self.distill.aux_weight and self.arch.lstm_hidden:
            raise ConfigError("distill.aux_weight: the auxiliary loss trains a feed-forward "
                              "student; set arch.lstm_hidden=0 or distill.aux_weight=0")
        if self.distill.near_weight < 0:
            raise ConfigError("distill.near_weight: must be >= 0 (0 = every frame weighs the "
                              f"same), got {self.distill.near_weight}")
        # the second discrete imitation terms, each weighted by its own field
        for name, term in (("group_weight", "drive-or-turn"), ("drive_side_weight", "drive-side")):
            weight = getattr(self.distill, name)
            if weight < 0:
                raise ConfigError(f"distill.{name}: must be >= 0 (0 = no {term} term), "
                                  f"got {weight}")
            if weight and self.continuous:
                raise ConfigError(f"distill.{name}: the {term} term needs discrete actions; set "
                                  f"continuous=false or distill.{name}=0")
        if self.distill.drive_side_from not in ("turn", "plan"):
            raise ConfigError(f"distill.drive_side_from: {self.distill.drive_side_from!r}; use "
                              "'turn' or 'plan'")
        if self.distill.drive_side_from == "plan" and not self.distill.aux_weight:
            raise ConfigError("distill.drive_side_from=plan: the plan's side is read from the "
                              "auxiliary target; set distill.aux_weight > 0 too")
        if self.distill.near_weight and not self.distill.aux_weight:
            raise ConfigError("distill.near_weight: the nearness of a frame is read from the "
                              "auxiliary target's lidar; set distill.aux_weight > 0 too")
        if not 0 < self.distill.near_range_m <= self.env.observation.lidar_range_m:
            raise ConfigError(f"distill.near_range_m: {self.distill.near_range_m} is outside "
                              f"(0, {self.env.observation.lidar_range_m}] m (the lidar's range)")
        if self.distill.augment_shift_px < 0:
            raise ConfigError("distill.augment_shift_px: must be >= 0")
        if self.time_budget_s < 0:
            raise ConfigError("time_budget_s: must be >= 0 (0 = no limit)")
        if self.eval.every_timesteps < 0:
            raise ConfigError("eval.every_timesteps: must be >= 0")


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts (overrides and sweep grids); values stay as typed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{dotted}: {key} is not a section")
    node[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`key.sub=value` strings -> (key, YAML-parsed value) pairs."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: write it as key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}") from None
        pairs.append((key.strip(), value))
    return pairs


def read_yaml(path: Path) -> Any:
    """The data of a YAML file; a syntax error raises a one-line `ConfigError` naming the file,
    the line and column, and what to fix (PyYAML's own message spans several lines)."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; save it as UTF-8 YAML") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = (getattr(err, "problem", None) or str(err).splitlines()[0]).strip()
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML ({problem}); fix it there: each setting is "
                          "`key: value`, sections are indented with spaces (no tabs), and "
                          "lists are written [a, b]") from None


def find_config(name_or_path: str) -> Path:
    """A preset name from training/configs/ or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    preset = CONFIG_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown config {name_or_path!r}; presets: {', '.join(names)}, "
                          "or pass a path to a .yaml file")
    return preset


EXTENDS_KEY = "extends"
"""A preset's key naming the preset (or YAML path, relative to its own folder) it starts
from: its own settings are laid over that one's, section by section, so a variant states only
what it changes."""


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: sections merge key by key, any other value replaces."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _find_base(name: Any, child: Path) -> Path:
    """The file an `extends:` value in `child` names: a preset, or a path from its folder."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{child}: `{EXTENDS_KEY}` must name a preset or a .yaml file, got "
                          f"{name!r}")
    beside = child.parent / name  # an absolute path stays itself
    if beside.suffix in (".yaml", ".yml"):
        if not beside.is_file():
            raise ConfigError(f"{child}: `{EXTENDS_KEY}: {name}`: there is no {beside}; a "
                              "path is read from this file's own folder")
        return beside
    try:
        return find_config(name)
    except ConfigError as err:
        raise ConfigError(f"{child}: `{EXTENDS_KEY}: {name}`: {err}") from None


def read_preset(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset file's settings with the chain of presets it `extends` resolved into them."""
    chain = (*_chain, path.resolve())
    data = read_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of `key: value` settings")
    if EXTENDS_KEY not in data:
        return data
    data = dict(data)
    base_path = _find_base(data.pop(EXTENDS_KEY), path)
    if base_path.resolve() in chain:
        loop = " -> ".join(p.name for p in (*chain, base_path))
        raise ConfigError(f"{path}: `{EXTENDS_KEY}` goes round in a circle ({loop}); make one "
                          "of them a full preset")
    return _merge(read_preset(base_path, chain), data)


def load_config(name_or_path: str | None = "default", overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> TrainConfig:
    """Preset (or `base` dict) + dotted overrides -> validated TrainConfig. A preset may start
    from another (`extends: default`)."""
    if base is not None:
        data = dict(base)
    elif name_or_path:
        data = read_preset(find_config(name_or_path))
    else:
        data = {}
    data = _continuous_at_top(_frame_stack_in_env(data))
    for key, value in parse_overrides(overrides or []):
        set_dotted(data, {"frame_stack": FRAME_STACK_KEY,
                           f"env.{CONTINUOUS_KEY}": CONTINUOUS_KEY}.get(key, key), value)
    return config_from_dict(data)


def load_run_config(run_dir: Path) -> TrainConfig:
    """The resolved config a run was started with (its config.yaml)."""
    path = run_dir / rundir.CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no {rundir.CONFIG_FILE})")
    return config_from_dict(read_yaml(path))


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """A validated TrainConfig from a (nested) dict such as a run's saved config.yaml."""
    if not isinstance(data, dict):
        raise ConfigError(f"a training config is a mapping, got {type(data).__name__}")
    return from_dict(TrainConfig, _finetune_section(_continuous_at_top(
        _frame_stack_in_env(data))))


def _finetune_section(data: dict[str, Any]) -> dict[str, Any]:
    """Read the earlier `distill.finetune_timesteps` (runs saved before fine-tuning had its
    own section) as `finetune.timesteps`."""
    distill = data.get("distill")
    if not isinstance(distill, dict) or "finetune_timesteps" not in distill:
        return data
    data, distill = dict(data), dict(distill)
    steps = distill.pop("finetune_timesteps")
    finetune = dict(data.get("finetune") or {})
    finetune.setdefault("timesteps", steps)
    data.update(distill=distill, finetune=finetune)
    return data


CONTINUOUS_KEY = "continuous"
"""The action variant is a top-level setting; `env.continuous` (in a preset or an override)
is read as this key. It is not an `EnvConfig` field because the env takes it beside its config
(`make_env(cfg, continuous)`, the two registered env ids) and a checkpoint records it once, as
its action space."""


def _continuous_at_top(data: dict[str, Any]) -> dict[str, Any]:
    """Move `env: {continuous: ...}` to the top-level `continuous` it means."""
    env = data.get("env")
    if not isinstance(env, dict) or CONTINUOUS_KEY not in env:
        return data  # nothing to move, or a malformed section from_dict reports
    data, env = dict(data), dict(env)
    value = env.pop(CONTINUOUS_KEY)
    if data.get(CONTINUOUS_KEY, value) != value:
        raise ConfigError(f"env.continuous: {value!r} disagrees with continuous "
                          f"{data[CONTINUOUS_KEY]!r}; set only one of them")
    data[CONTINUOUS_KEY] = value
    data["env"] = env
    return data


FRAME_STACK_KEY = "env.observation.frame_stack"
"""Where the frame stack lives; `frame_stack` at the top level is read as this key."""


def _frame_stack_in_env(data: dict[str, Any]) -> dict[str, Any]:
    """Accept `frame_stack` at the top level (older presets and run configs, and the override
    `frame_stack=2`, spell it so) as `env.observation.frame_stack`, where it lives."""
    env = data.get("env") or {}
    observation = env.get("observation") or {} if isinstance(env, dict) else None
    if "frame_stack" not in data or not isinstance(observation, dict):
        return data  # nothing to move, or a malformed section from_dict reports
    data, env, observation = dict(data), dict(env), dict(observation)
    value = data.pop("frame_stack")
    if observation.get("frame_stack", value) != value:
        raise ConfigError(f"frame_stack: {value!r} disagrees with env.observation.frame_stack "
                          f"{observation['frame_stack']!r}; set only env.observation.frame_stack")
    observation["frame_stack"] = value
    env["observation"] = observation
    data["env"] = env
    return data


def arch_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The network description stored in checkpoints."""
    return student_arch(cfg).as_dict()


def student_arch(cfg: TrainConfig) -> ArchSpec:
    """The camera network of this config, as checkpoints describe it."""
    a = cfg.arch
    return ArchSpec(a.features_dim, tuple(a.channels), tuple(a.net_arch), a.lstm_hidden)
