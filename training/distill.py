"""Teacher -> camera student distillation by DAgger (Learning by Cheating, Chen et al. 2019).

Read top to bottom:
1. The teacher: the privileged grid oracle, or a PPO policy trained on lidar + goal state with
   rendering switched off (thousands of steps/s instead of hundreds).
2. Collect camera frames with the *student* driving (after `expert_iterations` driven by the
   teacher, then a linearly decaying teacher share beta), every frame labelled with the
   teacher's action for that state, computed in the env's worker process.
3. Aggregate the labelled frames and fit the student by cross-entropy (discrete) or MSE
   on the mean action (continuous, `continuous=true`) on random-shift augmented images. A
   recurrent student (`arch.lstm_hidden > 0`) carries its LSTM state per env while it drives
   and is fitted on windows of consecutive frames of one env, from the zero state, the first
   `distill.burn_in` frames of a window warming the state up without loss (truncated
   backpropagation through time with a burn-in). With `distill.aux_weight`, a linear head on
   the student's CNN features also learns the privileged state around the robot (lidar
   ranges, the goal's bearing), an auxiliary task that only shapes the features; with
   `distill.near_weight`, frames close to an obstacle (by that lidar) weigh more in the
   imitation loss.
4. Repeat; evaluate on the held-out split and checkpoint through the run's hooks.

The student is an ordinary SB3 `ActorCriticCnnPolicy`, so it saves in the same checkpoint
format as pixel PPO and can be fine-tuned by PPO afterwards.
"""

from __future__ import annotations

import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy

import rundir
from envs.nav_env import ACTION_NAMES, DISCRETE_ACTIONS
from policies.actions import DRIVES, Memory
from policies.checkpoint import build_policy, is_recurrent, policy_actions, zero_state
from policies.metadata import CheckpointMeta
from training.config import TrainConfig, student_arch
from training.experts import ExpertLabel, MLPTeacher, auxiliary_size, current_infos, teacher_spec
from training.vec import make_vec_env, running


@dataclass
class DistillState:
    """Everything a resumed distillation continues from (the frame buffer is not kept)."""

    timesteps: int = 0
    iteration: int = 0
    episodes: int = 0
    successes: list[float] = field(default_factory=list)


class FrameBuffer:
    """Aggregated (frame, teacher action) pairs, and each frame's auxiliary target where
    `aux_size` > 0; a ring that drops the oldest when full."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype, aux_size: int = 0):
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.aux = np.zeros((capacity, aux_size), dtype=np.float32) if aux_size else None
        self.capacity, self.size, self.cursor = capacity, 0, 0

    def add(self, obs: np.ndarray, actions: np.ndarray, aux: np.ndarray | None = None) -> None:
        for i, (o, a) in enumerate(zip(obs, actions)):
            self.obs[self.cursor] = o
            self.actions[self.cursor] = a
            if self.aux is not None:
                self.aux[self.cursor] = aux[i]
            self.cursor = (self.cursor + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """`batch` random frames, their labels and their auxiliary targets (None without)."""
        idx = rng.integers(0, self.size, size=batch)
        return self.obs[idx], self.actions[idx], None if self.aux is None else self.aux[idx]


class SequenceBuffer:
    """Aggregated (frame, teacher action) pairs kept in each env's time order, for a recurrent
    student: a ring of `capacity // n_envs` steps of all envs, with the flag that marks an
    episode's first frame, sampled as windows of consecutive steps of one env."""

    def __init__(self, capacity: int, n_envs: int, obs_shape: tuple[int, ...],
                 action_shape: tuple[int, ...], action_dtype):
        self.steps = max(1, capacity // n_envs)
        self.obs = np.zeros((self.steps, n_envs, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros((self.steps, n_envs, *action_shape), dtype=action_dtype)
        self.starts = np.zeros((self.steps, n_envs), dtype=np.float32)
        self.n_envs, self.filled, self.cursor = n_envs, 0, 0

    @property
    def size(self) -> int:
        """Frames held."""
        return self.filled * self.n_envs

    def flat_actions(self) -> np.ndarray:
        return self.actions[:self.filled].reshape(-1, *self.actions.shape[2:])

    def add(self, obs: np.ndarray, actions: np.ndarray, starts: np.ndarray) -> None:
        """One step of every env: (n_envs, ...) frames, labels and episode-start flags."""
        self.obs[self.cursor], self.actions[self.cursor] = obs, actions
        self.starts[self.cursor] = starts
        self.cursor = (self.cursor + 1) % self.steps
        self.filled = min(self.filled + 1, self.steps)

    def sample(self, rng: np.random.Generator, n_seq: int, length: int, burn_in: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`n_seq` windows of `length` consecutive steps of one env, sequence-major
        (n_seq * length, ...) as sb3-contrib's LSTM expects them, and which of their steps
        carry loss (n_seq * length,) bool.

        Every window runs from the zero state with no reset inside (sb3-contrib then runs the
        whole sequence in one LSTM call instead of step by step), so the steps from the next
        episode's first frame on carry no loss, nor do the first `burn_in` steps unless the
        window starts at an episode's first frame (where the zero state is the true one). No
        window runs across the ring's write position.
        """
        length = min(length, self.filled)
        oldest = self.cursor if self.filled == self.steps else 0
        first = rng.integers(0, self.filled - length + 1, size=n_seq)
        t = (oldest + first[:, None] + np.arange(length)[None]) % self.steps
        env = rng.integers(0, self.n_envs, size=n_seq)[:, None]
        starts = self.starts[t, env] > 0
        later = starts.copy()
        later[:, 0] = False
        before_next = np.cumsum(later, axis=1) == 0
        warm = (np.arange(length)[None] >= burn_in) | starts[:, :1]
        flat = (-1, *self.obs.shape[2:])
        return (self.obs[t, env].reshape(flat),
                self.actions[t, env].reshape(-1, *self.actions.shape[2:]),
                (before_next & warm).reshape(-1))


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator,
                 groups: int = 16, horizontal: bool = True) -> torch.Tensor:
    """DrQ-style augmentation: shift each image by up to `pad` pixels (edge-replicated);
    `horizontal=False` shifts up and down only.

    Works on uint8 and draws one offset per group of images: a per-image gather over float
    copies costs more than the gradient step it feeds.
    """
    if pad == 0:
        return images
    n, c, h, w = images.shape
    padded = torch.empty((n, c, h + 2 * pad, w + 2 * pad), dtype=images.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = images
    padded[:, :, :pad, pad:pad + w] = images[:, :, :1]
    padded[:, :, pad + h:, pad:pad + w] = images[:, :, -1:]
    padded[:, :, :, :pad] = padded[:, :, :, pad:pad + 1]
    padded[:, :, :, pad + w:] = padded[:, :, :, pad + w - 1:pad + w]
    out = torch.empty_like(images)
    size = -(-n // groups)
    for start in range(0, n, size):
        oy, ox = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        if not horizontal:  # drawn anyway, so both settings consume the same random stream
            ox = pad
        out[start:start + size] = padded[start:start + size, :, oy:oy + h, ox:ox + w]
    return out


def colour_jitter(images: torch.Tensor, generator: torch.Generator,
                  gain: float = 0.3) -> torch.Tensor:
    """Colour augmentation that keeps the goal's cue: the red channel is left alone, while
    green and blue are swapped for half of the images (hue h -> -h, a mirror about red) and
    scaled by independent gains in [1 - gain, 1 + gain].

    Obstacles, walls and floor then take hues the split's colour bands never produce, so the
    student has to find them by shape and shading; the saturated red beacon stays red.
    """
    if gain <= 0:
        return images
    n, c, h, w = images.shape
    frames = images.reshape(n, c // 3, 3, h, w)  # stacked frames share one draw
    out = frames.clone()
    swap = torch.rand(n, generator=generator) < 0.5
    out[swap, :, 1], out[swap, :, 2] = frames[swap, :, 2], frames[swap, :, 1]
    gains = 1.0 + gain * (2 * torch.rand((n, 1, 2, 1, 1), generator=generator) - 1)
    out[:, :, 1:3] = (out[:, :, 1:3].float() * gains).clamp_(0, 255).to(images.dtype)
    return out.reshape(n, c, h, w)


def augment(images: torch.Tensor, n_seq: int, shift_px: int, colour_channels: int,
            generator: torch.Generator, shift_horizontal: bool = True) -> torch.Tensor:
    """Random shift and colour jitter of a (N, C, H, W) uint8 batch: the jitter covers the first
    `colour_channels` channels (stacked RGB frames; 0: none), not the command channels after.

    With `n_seq > 1` the batch is `n_seq` sequences of consecutive frames, and every frame of a
    sequence gets the same shift and colours: a view that jumps from frame to frame is motion
    the LSTM would have to learn to ignore.
    """
    n, c, h, w = images.shape
    rows = images.reshape(n_seq, (n // n_seq) * c, h, w) if n_seq > 1 else images
    rows = random_shift(rows, shift_px, generator, groups=n_seq if n_seq > 1 else 16,
                        horizontal=shift_horizontal)
    if colour_channels == c:  # no command channels: jitter in place of a split and a copy
        rows = colour_jitter(rows, generator)
    elif colour_channels:
        groups = rows.shape[0]
        per_step = rows.reshape(groups, -1, c, h, w)
        frames = per_step[:, :, :colour_channels].reshape(groups, -1, h, w)
        jittered = colour_jitter(frames, generator).reshape(groups, -1, colour_channels, h, w)
        rows = torch.cat([jittered, per_step[:, :, colour_channels:]], dim=2)
    return rows.reshape(n, c, h, w)


def class_weights(actions: np.ndarray, n_actions: int, power: float = 0.5) -> torch.Tensor:
    """Per-action loss weights ~ 1/frequency^power in the buffer, mean 1 over the samples.

    A student that spins searching for the goal fills the buffer with "turn left" labels; left
    unweighted, the rare "drive" labels (the goal in view) stop moving the argmax and the
    student never learns to leave the spin. `power` 0 gives every sample weight 1.
    """
    counts = np.bincount(actions.astype(np.int64), minlength=n_actions).astype(np.float64)
    weights = np.where(counts > 0, np.maximum(counts, 1.0) ** -power, 0.0)
    weights /= (weights * counts).sum() / counts.sum()
    return torch.as_tensor(weights, dtype=torch.float32)


def near_weights(aux: np.ndarray, rays: int, lidar_range_m: float, near_range_m: float,
                 near_weight: float) -> torch.Tensor:
    """(N,) per-frame weights of the imitation loss (`distill.near_weight`): 1 + near_weight
    where the nearest of the frame's `rays` lidar ranges (the first entries of its auxiliary
    target, as fractions of `lidar_range_m`) is under `near_range_m`, else 1."""
    nearest_m = aux[:, :rays].min(axis=1) * lidar_range_m
    return torch.as_tensor(1.0 + near_weight * (nearest_m < near_range_m), dtype=torch.float32)


def imitation_loss(policy: ActorCriticPolicy, obs: torch.Tensor, expert: torch.Tensor,
                   continuous: bool, weights: torch.Tensor | None = None,
                   group_weight: float = 0.0, side_weight: float = 0.0
                   ) -> tuple[torch.Tensor, float]:
    """`distribution_loss` of a feed-forward policy's action distribution on `obs`."""
    return distribution_loss(policy.get_distribution(obs), expert, continuous, weights,
                             group_weight=group_weight, side_weight=side_weight)


def auxiliary_imitation_loss(policy: ActorCriticPolicy, head: torch.nn.Module,
                             obs: torch.Tensor, expert: torch.Tensor, aux_target: torch.Tensor,
                             continuous: bool, weights: torch.Tensor | None = None,
                             frame_weights: torch.Tensor | None = None,
                             group_weight: float = 0.0, side_weight: float = 0.0,
                             side: torch.Tensor | None = None
                             ) -> tuple[torch.Tensor, float, torch.Tensor]:
    """`imitation_loss` and the auxiliary head's mean squared error on `aux_target`, from one
    pass of the CNN: the head reads the same features as the actor, so its gradient shapes
    them."""
    features = policy.extract_features(obs, policy.pi_features_extractor)
    dist = policy._get_action_dist_from_latent(policy.mlp_extractor.forward_actor(features))
    loss, agreement = distribution_loss(dist, expert, continuous, weights,
                                        frame_weights=frame_weights, group_weight=group_weight,
                                        side_weight=side_weight, side=side)
    return loss, agreement, F.mse_loss(head(features), aux_target)


def sequence_imitation_loss(policy: ActorCriticPolicy, obs: torch.Tensor, expert: torch.Tensor,
                            keep: torch.Tensor, n_seq: int, continuous: bool,
                            weights: torch.Tensor | None = None, group_weight: float = 0.0,
                            side_weight: float = 0.0) -> tuple[torch.Tensor, float]:
    """`distribution_loss` of a recurrent policy over `n_seq` sequence-major sequences, each
    run from the zero state with no reset inside; only the `keep` steps count."""
    no_starts = torch.zeros(len(expert), device=expert.device)
    dist, _ = policy.get_distribution(obs, zero_state(policy, n_seq), no_starts)
    return distribution_loss(dist, expert, continuous, weights, keep, group_weight=group_weight,
                             side_weight=side_weight)


def distribution_loss(dist, expert: torch.Tensor, continuous: bool,
                      weights: torch.Tensor | None = None, keep: torch.Tensor | None = None,
                      frame_weights: torch.Tensor | None = None, group_weight: float = 0.0,
                      side_weight: float = 0.0, side: torch.Tensor | None = None
                      ) -> tuple[torch.Tensor, float]:
    """The loss to minimise and how close the student is to the teacher.

    Discrete: cross-entropy on the logits (optionally class-weighted) and the fraction of
    frames where the student's argmax is the teacher's action. Continuous: MSE of the mean
    action against the teacher's (N, 2) action, plus the Gaussian negative log-likelihood of
    the teacher's action under the policy's std with the mean held fixed, so the std settles at
    the residual's scale (what PPO fine-tuning then explores with, rather than SB3's initial
    std of 1 over a [-1, 1] box) without pulling on the mean; the closeness is the mean
    absolute error of the mean action. `keep` (bool per row) selects the rows that count;
    `frame_weights` (per row, feed-forward only) make the loss a weighted mean over rows.
    Discrete, `group_weight` > 0 adds that times `group_nll`, and `side_weight` > 0 that times
    `drive_side_nll` (of `side` where given), each weighted over rows alike.
    """
    if frame_weights is not None and keep is not None:
        raise ValueError("frame_weights apply to feed-forward batches, which have no keep mask")
    if continuous:
        normal = dist.distribution
        mean, std = normal.mean, normal.stddev
        if keep is not None:
            mean, std, expert = mean[keep], std[keep], expert[keep]
        nll = 0.5 * ((expert - mean.detach()) / std) ** 2 + std.log()
        if frame_weights is None:
            loss = F.mse_loss(mean, expert) + nll.mean()
        else:
            loss = _row_mean(((mean - expert) ** 2 + nll).mean(dim=1), frame_weights)
        return loss, float((mean.detach() - expert).abs().mean())
    logits = dist.distribution.logits
    if keep is not None:
        logits, expert = logits[keep], expert[keep]
    if frame_weights is None:
        loss = F.cross_entropy(logits, expert.long(), weight=weights)
    else:
        # as cross_entropy's own class weighting: a mean weighted by each row's weights
        per_row = F.cross_entropy(logits, expert.long(), weight=weights, reduction="none")
        row_weights = frame_weights if weights is None else frame_weights * weights[expert.long()]
        loss = (per_row * frame_weights).sum() / row_weights.sum()
    if group_weight:
        loss = loss + group_weight * _row_mean(group_nll(logits, expert), frame_weights)
    if side_weight:
        loss = loss + side_weight * _row_mean(drive_side_nll(logits, expert, side),
                                              frame_weights)
    return loss, float((logits.argmax(1) == expert.long()).float().mean())


def _row_mean(values: torch.Tensor, frame_weights: torch.Tensor | None) -> torch.Tensor:
    """The mean of per-row `values`, weighted by `frame_weights` where given."""
    if frame_weights is None:
        return values.mean()
    return (values * frame_weights).sum() / frame_weights.sum()


def group_nll(logits: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
    """(N,) negative log of the probability each row's logits put on its teacher action's
    group (`policies.actions.DRIVES`: driving, or turning in place), the choice deployment
    makes first."""
    drives = torch.as_tensor(DRIVES, device=logits.device)
    log_p = logits.log_softmax(dim=1)
    log_drive = log_p.masked_fill(~drives, -torch.inf).logsumexp(dim=1)
    log_turn = log_p.masked_fill(drives, -torch.inf).logsumexp(dim=1)
    return -torch.where(drives[expert.long()], log_drive, log_turn)


ARC_LEFT, ARC_RIGHT = ACTION_NAMES.index("forward-left"), ACTION_NAMES.index("forward-right")
SIDE_DRIVES = torch.as_tensor([
    action if DRIVES[action] else ARC_LEFT if DISCRETE_ACTIONS[action, 1] > 0 else ARC_RIGHT
    for action in range(len(DRIVES))])
"""For each action, the driving action on its side: a turn in place maps to the drive that
arcs the same way (turn left -> forward-left), a driving action to itself."""


def drive_side_nll(logits: torch.Tensor, expert: torch.Tensor,
                   side: torch.Tensor | None = None) -> torch.Tensor:
    """(N,) for each row whose teacher action turns in place: the negative log of the
    probability, among the driving actions alone, of the drive that arcs the same way (or of
    `side`, (N,) driving actions, where given: `plan_side_drives`); 0 for rows whose teacher
    drives (the cross-entropy already teaches their drive).

    Where the teacher turns in place, cross-entropy only pushes the three driving actions down
    together and leaves which of them is likeliest untaught; yet that is the action deployment
    takes when it drives there anyway: a recovery drive after a full turn in place
    (`policies.actions.RECOVERY_DRIVES`), or a drive-or-turn decision that goes the wrong way.
    Untaught, nothing steers it away from what the teacher was turning from.
    """
    drives = torch.as_tensor(DRIVES, device=logits.device)
    log_p = logits.masked_fill(~drives, -torch.inf).log_softmax(dim=1)
    expert = expert.long()
    if side is None:
        side = SIDE_DRIVES.to(logits.device)[expert]
    nll = -log_p.gather(1, side.long()[:, None])[:, 0]
    return torch.where(drives[expert], torch.zeros_like(nll), nll)


def plan_side_drives(aux: np.ndarray) -> np.ndarray:
    """(N,) the drive that arcs towards the plan's next waypoint, from each frame's auxiliary
    target (`training.experts.auxiliary_target`, whose last entry is the sine of the
    waypoint's bearing): forward-left where it lies to the left, forward-right otherwise.

    Where the teacher turns in place to search (the goal out of view: always left), this is
    the way the map says the path goes rather than the search's convention."""
    return np.where(aux[:, -1] > 0, ARC_LEFT, ARC_RIGHT)


def balance_power(cfg: TrainConfig, progress: float) -> float:
    """The class weights' exponent at `progress` (0..1) of the run: 1/2 moving linearly to
    `distill.balance_power_final`."""
    final = cfg.distill.balance_power_final
    return 0.5 + (final - 0.5) * min(max(progress, 0.0), 1.0)


def teacher_share(cfg: TrainConfig, iteration: int) -> float:
    """beta: probability that the teacher's action is executed in this iteration."""
    d = cfg.distill
    if iteration < d.expert_iterations:
        return 1.0
    if d.beta_decay_iterations <= 0:
        return 0.0
    return max(0.0, 1.0 - (iteration - d.expert_iterations + 1) / d.beta_decay_iterations)


def student_meta(cfg: TrainConfig) -> CheckpointMeta:
    """What the student's checkpoints will say about it: env, network and action variant.

    Its spaces (channel-first frame-stacked uint8 images; `Discrete(5)` or the (2,) box in
    [-1, 1]) are the ones evaluation and export rebuild the policy with.
    """
    return CheckpointMeta(cfg.env, student_arch(cfg), cfg.continuous)


def make_student(cfg: TrainConfig, device: torch.device) -> ActorCriticPolicy:
    """A freshly initialised camera student for this run's env and action variant."""
    meta = student_meta(cfg)
    return build_policy(meta.observation_space(), meta.action_space(),
                        meta.arch.as_dict()).to(device)


def distill(cfg: TrainConfig, hooks, device: torch.device, teacher: MLPTeacher | None = None,
            student: ActorCriticPolicy | None = None, optimizer_state: dict | None = None,
            state: DistillState | None = None) -> tuple[ActorCriticPolicy, torch.optim.Optimizer,
                                                        DistillState]:
    """Run DAgger until `distill.total_timesteps` frames; returns the student and its state.

    `hooks` receives progress (`on_iteration`), may evaluate/checkpoint, may stop early
    (`should_stop`, e.g. on Ctrl-C), and says how much of the run is done (`progress`, which
    drives the learning-rate decay).
    """
    d = cfg.distill
    state = state or DistillState()
    continuous = hooks.continuous
    kind = d.teacher

    auxiliary = d.aux_weight > 0

    def wrapper(env):
        return ExpertLabel(env, kind, teacher, teacher_spec(d), auxiliary)

    # each (re)start of the collection draws new scenes: a resumed run does not replay its own
    seed = cfg.seed + rundir.SEED_OFFSETS["distill_iteration"] * state.iteration
    venv = make_vec_env(cfg.env, cfg.n_envs, seed, continuous,
                        kind=cfg.vec_env, monitor_dir=hooks.monitor_dir, wrapper=wrapper)
    with running(venv):
        image_shape = venv.observation_space.shape
        if student is None:
            student = make_student(cfg, device)
        optimizer = torch.optim.Adam(student.parameters(), lr=d.learning_rate)
        if optimizer_state is not None:
            optimizer.load_state_dict(optimizer_state)
        action_shape = venv.action_space.shape or ()
        frame_shape = (image_shape[2], image_shape[0], image_shape[1])
        action_dtype = np.float32 if continuous else np.int64
        recurrent = is_recurrent(student)
        buffer = (SequenceBuffer(d.buffer_size, cfg.n_envs, frame_shape, action_shape,
                                 action_dtype) if recurrent
                  else FrameBuffer(d.buffer_size, frame_shape, action_shape, action_dtype,
                                   auxiliary_size(cfg.env.observation) if auxiliary else 0))
        optimizers = [optimizer]
        if auxiliary:
            # The head lives only in training, with its own optimizer: checkpoints, export and
            # deployment see the plain student, and a resumed run starts a fresh head.
            aux_head = torch.nn.Linear(student.features_extractor.features_dim,
                                       auxiliary_size(cfg.env.observation)).to(device)
            optimizers.append(torch.optim.Adam(aux_head.parameters(), lr=d.learning_rate))
        # Only for frames that are exactly RGB: depth and segmentation channels are not colours.
        obs_cfg = cfg.env.observation
        colour = obs_cfg.frame_channels if d.augment_colour and obs_cfg.image_channels == 3 else 0
        rng = np.random.default_rng(cfg.seed + state.iteration)
        overlap = d.train_while_collecting
        # Overlapped, the training thread draws from a stream of its own: one generator shared
        # by two threads would make the run depend on their timing.
        train_rng = np.random.default_rng([cfg.seed + state.iteration, 1]) if overlap else rng
        gen = torch.Generator().manual_seed(cfg.seed + state.iteration)
        if not recurrent:
            # oneDNN's convolutions run about 1.4x faster on NHWC than on NCHW on this CPU
            student = student.to(memory_format=torch.channels_last)
        obs = venv.reset()
        expert = np.array([info["expert_action"] for info in venv.reset_infos])
        aux = np.array([info["aux_target"] for info in venv.reset_infos]) if auxiliary else None
        starts = np.ones(cfg.n_envs, dtype=np.float32)
        # the drive-or-turn decision reads what each env did so far in its episode
        memory = Memory.start(cfg.n_envs) \
            if not continuous and d.rollout_decision == "drive_or_turn" else None
        lstm_state = zero_state(student, cfg.n_envs) if recurrent else None
        steps_per_env = max(1, d.steps_per_iteration // cfg.n_envs)

        def fit(progress: float, cancel: threading.Event) -> dict[str, float]:
            """One iteration's gradient steps on the buffer; the scalars they log."""
            t1 = time.perf_counter()
            student.set_training_mode(True)
            # Linear decay to lr_final_fraction: late iterations refine rather than overwrite
            # what the student learned, so neighbouring checkpoints differ less.
            frac = 1.0 - (1.0 - d.lr_final_fraction) * progress
            for opt in optimizers:
                for group in opt.param_groups:
                    group["lr"] = d.learning_rate * frac
            losses, agreements, aux_losses, near_shares = [], [], [], []
            labels = buffer.flat_actions() if recurrent else buffer.actions[:buffer.size]
            power = balance_power(cfg, progress)
            weights = None if continuous or not d.balance_actions else class_weights(
                labels, venv.action_space.n, power).to(device)
            n_seq = max(1, d.batch_size // d.sequence_length)
            for _ in range(d.grad_steps_per_iteration):
                if cancel.is_set():
                    break
                if recurrent:
                    batch_obs, batch_act, batch_keep = buffer.sample(
                        train_rng, n_seq, d.sequence_length, d.burn_in)
                    if not batch_keep.any():  # every window began in a burn-in before a reset
                        continue
                else:
                    batch_obs, batch_act, batch_aux = buffer.sample(train_rng, d.batch_size)
                images = augment(torch.as_tensor(batch_obs), n_seq if recurrent else 1,
                                 d.augment_shift_px, colour, gen,
                                 d.augment_shift_horizontal).to(device)
                if not recurrent:  # in the student's own memory order
                    images = images.contiguous(memory_format=torch.channels_last)
                target = torch.as_tensor(batch_act, device=device)
                if recurrent:
                    loss, agreement = sequence_imitation_loss(
                        student, images, target, torch.as_tensor(batch_keep, device=device),
                        n_seq, continuous, weights, d.group_weight, d.drive_side_weight)
                elif auxiliary:
                    frame_weights = near_weights(
                        batch_aux, obs_cfg.lidar_rays, obs_cfg.lidar_range_m, d.near_range_m,
                        d.near_weight).to(device) if d.near_weight else None
                    if frame_weights is not None:
                        near_shares.append(float((frame_weights > 1).float().mean()))
                    side = torch.as_tensor(plan_side_drives(batch_aux), device=device) \
                        if d.drive_side_from == "plan" else None
                    loss, agreement, aux_loss = auxiliary_imitation_loss(
                        student, aux_head, images, target,
                        torch.as_tensor(batch_aux, device=device), continuous, weights,
                        frame_weights, d.group_weight, d.drive_side_weight, side)
                    aux_losses.append(aux_loss.item())
                    loss = loss + d.aux_weight * aux_loss
                else:
                    loss, agreement = imitation_loss(student, images, target, continuous,
                                                     weights, d.group_weight,
                                                     d.drive_side_weight)
                for opt in optimizers:
                    opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                for opt in optimizers:
                    opt.step()
                losses.append(loss.item())
                agreements.append(agreement)
            scalars = {"distill/learning_rate": d.learning_rate * frac}
            if losses:
                scalars["distill/loss"] = float(np.mean(losses))
                scalars["distill/action_mae" if continuous else "distill/teacher_agreement"] = \
                    float(np.mean(agreements))
            if weights is not None:
                scalars["distill/balance_power"] = power
            if aux_losses:
                scalars["distill/aux_loss"] = float(np.mean(aux_losses))
            if near_shares:
                scalars["distill/near_share"] = float(np.mean(near_shares))
            scalars["time/train_s"] = time.perf_counter() - t1
            return scalars

        # Overlapped, the envs collect the next frames with a frozen copy of the student while
        # a second thread fits the student on the frames already gathered: the renderers and
        # the gradient steps then share the cores instead of taking turns. The frames wait in
        # `staged` until the fit ends, so it reads a buffer nobody writes.
        actor = copy.deepcopy(student) if overlap else student
        staged: list[tuple] = []
        store = (lambda *record: staged.append(record)) if overlap else buffer.add
        cancel = threading.Event()
        with ThreadPoolExecutor(max_workers=1) if overlap else nullcontext() as pool:
            try:
                while state.timesteps < d.total_timesteps and not hooks.should_stop():
                    beta = teacher_share(cfg, state.iteration)
                    fitting = None
                    if overlap:
                        torch.set_num_threads(cfg.torch_threads_train)
                        actor.load_state_dict(student.state_dict())
                        if buffer.size:
                            fitting = pool.submit(fit, hooks.progress(state.timesteps), cancel)
                    else:
                        torch.set_num_threads(cfg.torch_threads_collect)
                    t0 = time.perf_counter()
                    actor.set_training_mode(False)
                    for _ in range(steps_per_env):
                        chw = np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
                        images = torch.as_tensor(chw, device=device)
                        own, lstm_state = policy_actions(
                            actor, images, lstm_state, torch.as_tensor(starts, device=device),
                            drive_or_turn=d.rollout_decision == "drive_or_turn", memory=memory)
                        take_teacher = rng.uniform(size=cfg.n_envs) < beta
                        shape = (-1,) + (1,) * (own.ndim - 1)
                        actions = np.where(take_teacher.reshape(shape), expert, own)
                        store(chw, expert, starts if recurrent else aux)
                        obs, _, dones, infos = venv.step(actions)
                        starts = dones.astype(np.float32)
                        if memory is not None:
                            memory.record(actions, ended=dones)
                        now = current_infos(infos, dones, venv.reset_infos)
                        expert = np.array([info["expert_action"] for info in now])
                        if auxiliary:
                            aux = np.array([info["aux_target"] for info in now])
                        for i in np.flatnonzero(dones):
                            state.episodes += 1
                            state.successes.append(float(infos[i]["success"]))
                        state.timesteps += cfg.n_envs
                    collect_s = time.perf_counter() - t0
                    if overlap:
                        fitted = fitting.result() if fitting is not None else {}
                        for record in staged:
                            buffer.add(*record)
                        staged.clear()
                    else:
                        torch.set_num_threads(cfg.torch_threads_train)
                        fitted = fit(hooks.progress(state.timesteps), cancel)
                    state.iteration += 1
                    scalars = {"distill/beta": beta, "distill/buffer_frames": buffer.size,
                               "time/collect_s": collect_s, **fitted}
                    hooks.on_iteration(student, optimizer, state, scalars)
            finally:
                cancel.set()  # a fit still running (Ctrl-C, an env error) stops at its next step
    student = student.to(memory_format=torch.contiguous_format)
    return student, optimizer, state
