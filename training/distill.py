"""Teacher -> camera student distillation by DAgger (Learning by Cheating, Chen et al. 2019).

Read top to bottom:
1. The teacher: the privileged grid oracle, or a PPO policy trained on lidar + goal state with
   rendering switched off (thousands of steps/s instead of hundreds).
2. Collect camera frames with the *student* driving (after `expert_iterations` driven by the
   teacher, then a linearly decaying teacher share beta), every frame labelled with the
   teacher's action for that state, computed in the env's worker process.
3. Aggregate the labelled frames and fit the student by cross-entropy (discrete) or MSE
   on the mean action (continuous, `continuous=true`) on random-shift augmented images.
4. Repeat; evaluate on the held-out split and checkpoint through the run's hooks.

The student is an ordinary SB3 `ActorCriticCnnPolicy`, so it saves in the same checkpoint
format as pixel PPO and can be fine-tuned by PPO afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy

import rundir
from policies.checkpoint import build_policy
from policies.metadata import ArchSpec, CheckpointMeta
from training.config import TrainConfig
from training.experts import ExpertLabel, MLPTeacher
from training.vec import make_vec_env, running


@dataclass
class DistillState:
    """Everything a resumed distillation continues from (the frame buffer is not kept)."""

    timesteps: int = 0
    iteration: int = 0
    episodes: int = 0
    successes: list[float] = field(default_factory=list)


class FrameBuffer:
    """Aggregated (frame, teacher action) pairs; a ring that drops the oldest when full."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype):
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.uint8)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.capacity, self.size, self.cursor = capacity, 0, 0

    def add(self, obs: np.ndarray, actions: np.ndarray) -> None:
        for o, a in zip(obs, actions):
            self.obs[self.cursor] = o
            self.actions[self.cursor] = a
            self.cursor = (self.cursor + 1) % self.capacity
            self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.integers(0, self.size, size=batch)
        return self.obs[idx], self.actions[idx]


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator,
                 groups: int = 16) -> torch.Tensor:
    """DrQ-style augmentation: shift each image by up to `pad` pixels (edge-replicated).

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


def class_weights(actions: np.ndarray, n_actions: int) -> torch.Tensor:
    """Per-action loss weights ~ 1/sqrt(frequency) in the buffer, mean 1 over the samples.

    A student that spins searching for the goal fills the buffer with "turn left" labels; left
    unweighted, the rare "drive" labels (the goal in view) stop moving the argmax and the
    student never learns to leave the spin.
    """
    counts = np.bincount(actions.astype(np.int64), minlength=n_actions).astype(np.float64)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0)
    weights /= (weights * counts).sum() / counts.sum()
    return torch.as_tensor(weights, dtype=torch.float32)


def imitation_loss(policy: ActorCriticPolicy, obs: torch.Tensor, expert: torch.Tensor,
                   continuous: bool, weights: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, float]:
    """The loss to minimise and how close the student is to the teacher.

    Discrete: cross-entropy on the logits (optionally class-weighted) and the fraction of
    frames where the student's argmax is the teacher's action. Continuous: MSE of the mean
    action against the teacher's (N, 2) action, plus the Gaussian negative log-likelihood of
    the teacher's action under the policy's std with the mean held fixed, so the std settles at
    the residual's scale (what PPO fine-tuning then explores with, rather than SB3's initial
    std of 1 over a [-1, 1] box) without pulling on the mean; the closeness is the mean
    absolute error of the mean action.
    """
    dist = policy.get_distribution(obs)
    if continuous:
        normal = dist.distribution
        mean = normal.mean
        std = normal.stddev
        nll = (0.5 * ((expert - mean.detach()) / std) ** 2 + std.log()).mean()
        return F.mse_loss(mean, expert) + nll, float((mean.detach() - expert).abs().mean())
    logits = dist.distribution.logits
    loss = F.cross_entropy(logits, expert.long(), weight=weights)
    return loss, float((logits.argmax(1) == expert.long()).float().mean())


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
    a = cfg.arch
    return CheckpointMeta(cfg.env, ArchSpec(a.features_dim, tuple(a.channels), tuple(a.net_arch)),
                          cfg.continuous)


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

    def wrapper(env):
        return ExpertLabel(env, kind, teacher, clearance_m=d.teacher_clearance_m)

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
        buffer = FrameBuffer(d.buffer_size, (image_shape[2], image_shape[0], image_shape[1]),
                             action_shape, np.float32 if continuous else np.int64)
        # Only for frames that are exactly RGB: depth and segmentation channels are not colours.
        colour = d.augment_colour and cfg.env.observation.image_channels == 3
        rng = np.random.default_rng(cfg.seed + state.iteration)
        gen = torch.Generator().manual_seed(cfg.seed + state.iteration)
        obs = venv.reset()
        expert = np.array([info["expert_action"] for info in venv.reset_infos])
        steps_per_env = max(1, d.steps_per_iteration // cfg.n_envs)
        while state.timesteps < d.total_timesteps and not hooks.should_stop():
            beta = teacher_share(cfg, state.iteration)
            t0 = time.perf_counter()
            torch.set_num_threads(cfg.torch_threads_collect)
            student.set_training_mode(False)
            for _ in range(steps_per_env):
                chw = np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
                with torch.no_grad():
                    own = student._predict(torch.as_tensor(chw, device=device), True)
                own = own.cpu().numpy()
                take_teacher = rng.uniform(size=cfg.n_envs) < beta
                shape = (-1,) + (1,) * (own.ndim - 1)
                actions = np.where(take_teacher.reshape(shape), expert, own)
                buffer.add(chw, expert)
                obs, _, dones, infos = venv.step(actions)
                expert = np.array([venv.reset_infos[i]["expert_action"] if dones[i]
                                   else infos[i]["expert_action"] for i in range(cfg.n_envs)])
                for i in np.flatnonzero(dones):
                    state.episodes += 1
                    state.successes.append(float(infos[i]["success"]))
                state.timesteps += cfg.n_envs
            collect_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            torch.set_num_threads(cfg.torch_threads_train)
            student.set_training_mode(True)
            # Linear decay to lr_final_fraction: late iterations refine rather than overwrite
            # what the student learned, so neighbouring checkpoints differ less.
            frac = 1.0 - (1.0 - d.lr_final_fraction) * hooks.progress(state.timesteps)
            for group in optimizer.param_groups:
                group["lr"] = d.learning_rate * frac
            losses, agreements = [], []
            weights = None if continuous or not d.balance_actions else class_weights(
                buffer.actions[:buffer.size], venv.action_space.n).to(device)
            for _ in range(d.grad_steps_per_iteration):
                batch_obs, batch_act = buffer.sample(rng, d.batch_size)
                images = random_shift(torch.as_tensor(batch_obs), d.augment_shift_px, gen)
                if colour:
                    images = colour_jitter(images, gen)
                images = images.to(device)
                target = torch.as_tensor(batch_act, device=device)
                loss, agreement = imitation_loss(student, images, target, continuous, weights)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                optimizer.step()
                losses.append(loss.item())
                agreements.append(agreement)
            state.iteration += 1
            hooks.on_iteration(student, optimizer, state, {
                "distill/loss": float(np.mean(losses)),
                ("distill/action_mae" if continuous else "distill/teacher_agreement"):
                    float(np.mean(agreements)),
                "distill/beta": beta,
                "distill/learning_rate": d.learning_rate * frac,
                "distill/buffer_frames": buffer.size,
                "time/collect_s": collect_s,
                "time/train_s": time.perf_counter() - t1,
            })
    return student, optimizer, state
