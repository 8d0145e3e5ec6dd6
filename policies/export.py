"""Export a camera checkpoint to ONNX or TorchScript, checked for parity with PyTorch.

The exported model is what a robot runs, so it takes the camera image exactly as the env (and
a ROS 2 `sensor_msgs/Image` rgb8) delivers it, with the preprocessing inside the graph:

    input  "image"   uint8 (N, H, W, C), channel-last, values 0-255 (C = 3 * frame_stack)
    output "logits"  float32 (N, n_actions), unnormalised; the action is
                     `policies.actions.decide` of them (drive or turn in place first)
      or   "action"  float32 (N, 2), the deterministic (mean) action clipped to [-1, 1]

Inside: permute to (N, C, H, W), float, / 255 (what SB3 does before the CNN), features, actor
MLP, action head and, for continuous actions, the clip that SB3 applies in `predict` outside
the network (an export of the bare network would drop it). The value head is left out.

A recurrent policy (`arch.lstm_hidden > 0`) carries its LSTM state as explicit tensors, so the
runtime owns it and the graph stays a pure function:

    inputs  "image", "lstm_h", "lstm_c"             state float32 (layers, N, hidden)
    outputs "logits" | "action", "lstm_h_out", "lstm_c_out"

The caller feeds each step's output state into the next step and zeros at an episode's first
frame (`OnnxPolicy` does both: `reset()` at episode start, `forward` carries the state).

ONNX models carry the checkpoint's metadata (env config, frame stack, spaces) in
`metadata_props["embodied_meta"]`, so a deployment needs the .onnx file alone, and the SHA-256
of the checkpoint file they were exported from in `metadata_props["checkpoint_sha256"]`, so a
deployment can tell whether the model still is that checkpoint.

Parity: the exported model and the PyTorch policy are run on the same observations (frames
recorded by rolling the env with the policy, or ones passed in) and compared: the largest
absolute difference of the outputs and the fraction of observations on which both choose the
same action. A recurrent policy is compared step by step over whole recorded episodes, each
side carrying its own state from the episode's first frame, so a state that drifts shows.
The result is returned and written next to the model as `<stem>.parity.json`,
one entry per format (policy.onnx and policy.ts share the stem `policy`).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

import rundir
from envs.wrappers import make_env
from policies.actions import Memory, decide
from policies.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointMeta,
    LoadedPolicy,
    file_sha256,
    load_checkpoint,
    resolve_checkpoint,
    zero_state,
)

FORMATS = {"onnx": ".onnx", "torchscript": ".ts"}
"""Export format -> file suffix of the default output (`policy.onnx`, `policy.ts`)."""

OPSET = 17
INPUT_NAME = "image"
STATE_INPUTS = ("lstm_h", "lstm_c")
"""A recurrent model's state inputs: the LSTM's hidden and cell state (layers, N, hidden)."""
STATE_OUTPUTS = ("lstm_h_out", "lstm_c_out")
"""...and the state after the step, to feed back in at the next one."""
META_KEY = "embodied_meta"
"""ONNX `metadata_props` key holding the checkpoint metadata as JSON."""
CHECKPOINT_SHA_KEY = "checkpoint_sha256"
"""ONNX `metadata_props` key holding the SHA-256 of the checkpoint file exported."""

PARITY_STEPS = 64
"""Control steps rolled out to record real frames for the parity check."""
PARITY_SEED = 7_000_000
"""Reset seed of the parity rollout; far from the small integers training envs use."""
ACTION_ATOL = 1e-4
"""Two continuous actions agree when no component differs by more than this."""


class ExportError(ValueError):
    """An export cannot be made or checked with the given inputs."""


# ---------------------------------------------------------------------------- the graph


class ExportedActor(nn.Module):
    """uint8 (N, H, W, C) image -> logits (N, n_actions) or clipped mean action (N, 2); for a
    recurrent policy (image, h, c) -> (output, h', c').

    Shares its layers with the SB3 policy it wraps (no copy of the weights).
    """

    def __init__(self, loaded: LoadedPolicy) -> None:
        super().__init__()
        policy = loaded.policy
        if getattr(policy, "squash_output", False):
            raise ExportError("policies with squashed (tanh) outputs are not supported; "
                              "train without squash_output / use_sde")
        self.features = policy.pi_features_extractor
        self.mlp = policy.mlp_extractor
        self.head = policy.action_net
        self.lstm = policy.lstm_actor if loaded.recurrent else None
        self.scale = 1.0 / 255.0 if policy.normalize_images else 1.0
        self.continuous = loaded.continuous
        space = policy.action_space
        self.low = float(np.min(space.low)) if self.continuous else 0.0
        self.high = float(np.max(space.high)) if self.continuous else 0.0

    def forward(self, image: torch.Tensor, *state: torch.Tensor
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image.permute(0, 3, 1, 2).float() * self.scale
        features = self.features(x)
        if self.lstm is not None:
            sequence, (h, c) = self.lstm(features.unsqueeze(0), state)
            features = sequence.squeeze(0)
        out = self.head(self.mlp.forward_actor(features))
        if self.continuous:
            # SB3 clips in predict(), outside the network; ONNX would otherwise drop it.
            out = torch.clamp(out, self.low, self.high)
        return (out, h, c) if self.lstm is not None else out


def output_name(continuous: bool) -> str:
    return "action" if continuous else "logits"


def actions_from_outputs(outputs: np.ndarray, continuous: bool) -> np.ndarray:
    """Outputs (N, A) -> actions: (N,) int64 from the logits (`policies.actions.decide`, each
    row on its own, with no memory of earlier actions: no held turn, no recovery drive), or the
    (N, 2) actions."""
    return outputs if continuous else decide(outputs)


def reference_outputs(loaded: LoadedPolicy, obs_hwc: np.ndarray,
                      starts: np.ndarray | None = None) -> np.ndarray:
    """The PyTorch policy's outputs on (N, H, W, C) uint8, through SB3's own preprocessing.

    A recurrent policy takes the N frames as consecutive steps, through sb3-contrib's own
    sequence code, its state zeroed at the first frame and wherever `starts` (N,) is true.

    Returns:
        (N, A) float32: raw logits (discrete) or the mean action clipped to the action space.
    """
    policy = loaded.policy
    chw = torch.as_tensor(np.ascontiguousarray(obs_hwc.transpose(0, 3, 1, 2)),
                          device=policy.device)
    with torch.no_grad():
        features = policy.extract_features(chw, policy.pi_features_extractor)
        if loaded.recurrent:
            flags = np.zeros(len(chw), np.float32) if starts is None else starts.astype(np.float32)
            features, _ = policy._process_sequence(
                features, zero_state(policy, 1), torch.as_tensor(flags, device=policy.device),
                policy.lstm_actor)
        out = policy.action_net(policy.mlp_extractor.forward_actor(features)).cpu().numpy()
    if loaded.continuous:
        space = policy.action_space
        out = np.clip(out, space.low, space.high)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------- observations


def record_observations(loaded: LoadedPolicy, steps: int = PARITY_STEPS,
                        seed: int = PARITY_SEED, whole_episodes: bool = False
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Roll the policy in its own env for `steps` control steps and keep every observation;
    with `whole_episodes`, on until the episode under way at `steps` ends.

    Returns:
        (n, H, W, C) uint8 frames, frame-stacked as the policy sees them, and (n,) bool: the
        frame is an episode's first.
    """
    env = make_env(_meta(loaded).env_config(), loaded.continuous)
    frames, starts, episodes = [], [], 0
    try:
        obs, _ = env.reset(seed=seed)
        loaded.reset()
        start = True
        while len(frames) < steps or (whole_episodes and not start):
            frames.append(obs)
            starts.append(start)
            action = loaded.predict(obs)
            obs, _, terminated, truncated, _ = env.step(
                action if loaded.continuous else int(action))
            start = terminated or truncated
            if start:
                episodes += 1
                obs, _ = env.reset(seed=seed + episodes)
                loaded.reset()
    finally:
        env.close()
    return np.stack(frames), np.array(starts)


def _meta(loaded: LoadedPolicy) -> CheckpointMeta:
    if loaded.meta is None:
        raise ExportError("exporting needs a policy loaded from a checkpoint (load_checkpoint)")
    return loaded.meta


def _check_obs(obs: np.ndarray, meta: CheckpointMeta) -> np.ndarray:
    obs = np.asarray(obs)
    expected = meta.image_shape
    if obs.ndim == 3:
        obs = obs[None]
    if obs.dtype != np.uint8 or obs.ndim != 4 or obs.shape[1:] != expected or len(obs) == 0:
        raise ExportError(
            f"check_obs must be uint8 (N, {expected[0]}, {expected[1]}, {expected[2]}) "
            f"channel-last images with N >= 1, got {obs.dtype} {obs.shape}")
    return np.ascontiguousarray(obs)


# ---------------------------------------------------------------------------- files


def default_export_path(target: str | os.PathLike, fmt: str = "onnx") -> Path:
    """Where an export of `target` goes without --out: beside it inside an untracked run
    directory, under runs/<name>/ otherwise (see `rundir.default_output`)."""
    return rundir.default_output(target, Path(CHECKPOINT_NAME).stem + _suffix(fmt))


def _suffix(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {sorted(FORMATS)}")
    return FORMATS[fmt]


def parity_path(model_path: str | os.PathLike) -> Path:
    """`<stem>.parity.json` next to the model."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + ".parity.json")


@contextlib.contextmanager
def _quiet_deprecations() -> Iterator[None]:
    # torch 2.13 marks torch.jit and the TorchScript-based ONNX exporter deprecated; both are
    # still the supported way to get these two formats from an SB3 policy.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        # Said of every LSTM export; it concerns models whose initial state is not an input,
        # and a recurrent model here takes its state as inputs.
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        # The LSTM's own shape checks, constant for one model, are what tracing warns about.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield


# ---------------------------------------------------------------------------- writers


def zero_lstm_state(actor: ExportedActor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A recurrent actor's (h, c) state inputs at an episode's first frame."""
    shape = (actor.lstm.num_layers, batch, actor.lstm.hidden_size)
    return torch.zeros(shape), torch.zeros(shape)


def _example(actor: ExportedActor, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The inputs one step takes: the image, and a recurrent actor's zero state."""
    if actor.lstm is None:
        return (image,)
    return (image, *zero_lstm_state(actor, len(image)))


def _write_onnx(actor: ExportedActor, example: tuple[torch.Tensor, ...], meta: CheckpointMeta,
                checkpoint_sha256: str, path: Path) -> None:
    out = output_name(actor.continuous)
    inputs, outputs = [INPUT_NAME], [out]
    axes = {INPUT_NAME: {0: "batch"}, out: {0: "batch"}}
    if actor.lstm is not None:
        inputs, outputs = inputs + list(STATE_INPUTS), outputs + list(STATE_OUTPUTS)
        axes.update({name: {1: "batch"} for name in STATE_INPUTS + STATE_OUTPUTS})

    def write(tmp: Path) -> None:
        with _quiet_deprecations():
            torch.onnx.export(
                actor, example, str(tmp), dynamo=False, opset_version=OPSET,
                input_names=inputs, output_names=outputs, dynamic_axes=axes)
        model = onnx.load(str(tmp))
        for key, value in ((META_KEY, meta.to_json()), (CHECKPOINT_SHA_KEY, checkpoint_sha256)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))

    rundir.atomic_write(path, write)


def _write_torchscript(actor: ExportedActor, example: tuple[torch.Tensor, ...],
                       path: Path) -> None:
    def write(tmp: Path) -> None:
        with _quiet_deprecations():
            torch.jit.save(torch.jit.trace(actor, example, check_trace=False), str(tmp))

    rundir.atomic_write(path, write)


def load_torchscript(path: str | os.PathLike) -> torch.jit.ScriptModule:
    """A TorchScript model written by `export_policy` (same input and output as the ONNX one)."""
    with _quiet_deprecations():
        return torch.jit.load(str(path), map_location="cpu")


class TorchGraphPolicy:
    """An export graph under PyTorch (the `ExportedActor` or its TorchScript trace), stepped
    as `OnnxPolicy` is: `forward` feeds a recurrent graph's LSTM state back in and keeps what
    comes out; `reset()` starts an episode. One stepper, so the export's parity check and
    the inference benchmark run the same loop.

    Args:
        module: the graph, called as module(image) or module(image, h, c).
        actor: the `ExportedActor` it was built from (says whether there is a state, and its
            shape).
    """

    def __init__(self, module: Callable[..., Any], actor: ExportedActor) -> None:
        self.module = module
        self.actor = actor
        self.state: list[torch.Tensor] = []
        """The LSTM (h, c) after the last `forward` (empty: the next frame starts an episode)."""

    def reset(self) -> None:
        """The next `forward` starts an episode: its state is zero."""
        self.state = []

    def forward(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, A) logits or clipped actions."""
        image = torch.from_numpy(images)
        with torch.no_grad():
            if self.actor.lstm is None:
                return self.module(image).numpy()
            if not self.state or self.state[0].shape[1] != len(images):
                self.state = list(zero_lstm_state(self.actor, len(images)))
            out, *self.state = self.module(image, *self.state)
            return out.numpy()


def _run_exported(fmt: str, path: Path, obs: np.ndarray, actor: ExportedActor,
                  starts: np.ndarray) -> np.ndarray:
    """The exported model's outputs on `obs`: one batch for a feed-forward model; a recurrent
    one steps through the frames, feeding its state back and zeroing it at `starts`."""
    model = (OnnxPolicy(path) if fmt == "onnx"
             else TorchGraphPolicy(load_torchscript(path), actor))
    if actor.lstm is None:
        return model.forward(obs)
    outputs = []
    for frame, start in zip(obs, starts):
        if start:
            model.reset()
        outputs.append(model.forward(frame[None])[0])
    return np.stack(outputs)


def parity(reference: np.ndarray, exported: np.ndarray, continuous: bool) -> dict[str, float]:
    """Max |difference| of two (N, A) outputs and the fraction of equal actions."""
    ref_a = actions_from_outputs(reference, continuous)
    exp_a = actions_from_outputs(exported, continuous)
    same = (np.all(np.abs(ref_a - exp_a) <= ACTION_ATOL, axis=1) if continuous
            else ref_a == exp_a)
    return {"max_abs_diff": float(np.max(np.abs(reference - exported))),
            "action_agreement": float(np.mean(same))}


def export_policy(target: str | os.PathLike, fmt: str = "onnx",
                  out: str | os.PathLike | None = None,
                  check_obs: np.ndarray | None = None) -> dict[str, Any]:
    """Export a checkpoint to ONNX or TorchScript and check it against the PyTorch policy.

    Args:
        target: a checkpoint file or a run directory (its best, else final, checkpoint).
        fmt: "onnx" (opset 17, dynamic batch axis) or "torchscript" (traced).
        out: output file; default `policy.onnx` / `policy.ts` in the run directory (or in the
            checkpoint's folder when `target` is a file).
        check_obs: uint8 (N, H, W, C) observations for the parity check (one episode from its
            first frame, for a recurrent policy); default: the frames of a
            `PARITY_STEPS`-step rollout of the policy in its own env (whole episodes, for a
            recurrent policy).

    Returns:
        {"format", "path", "parity_path", "checkpoint", "checkpoint_sha256" (of the
        checkpoint file, also stored in the ONNX metadata), "sha256" (of the exported file),
        "input", "output", "continuous", "n_obs", "obs_source", "max_abs_diff",
        "action_agreement"}.

    Raises:
        CheckpointError: no readable checkpoint at `target`.
        ExportError: an unknown format or check_obs of the wrong shape or dtype.
    """
    suffix = _suffix(fmt)
    checkpoint = resolve_checkpoint(target)
    path = Path(out) if out is not None else default_export_path(target, fmt)
    if path.suffix != suffix:
        raise ExportError(f"{fmt} output {path} should end in {suffix}")
    # Hashed before loading: the hash names the bytes the exported weights came from.
    checkpoint_sha256 = file_sha256(checkpoint)
    loaded = load_checkpoint(checkpoint)
    meta = _meta(loaded)
    if check_obs is None:
        obs, starts = record_observations(loaded, whole_episodes=loaded.recurrent)
        source = (f"rollout of {int(starts.sum())} whole episodes, {len(obs)} steps"
                  if loaded.recurrent else f"rollout of {PARITY_STEPS} steps")
    else:
        obs, source = _check_obs(check_obs, meta), "given"
        starts = np.arange(len(obs)) == 0
    actor = ExportedActor(loaded).eval()
    example = _example(actor, torch.from_numpy(obs[:1]))
    if fmt == "onnx":
        _write_onnx(actor, example, meta, checkpoint_sha256, path)
    else:
        _write_torchscript(actor, example, path)
    # A feed-forward model takes the whole batch in one call, which also exercises the
    # dynamic batch axis.
    result = parity(reference_outputs(loaded, obs, starts),
                    _run_exported(fmt, path, obs, actor, starts), loaded.continuous)
    h, w, c = meta.image_shape
    report = {
        "format": fmt,
        "path": str(path),
        "parity_path": str(parity_path(path)),
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": checkpoint_sha256,
        "sha256": file_sha256(path),
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["N", h, w, c]},
        "output": {"name": output_name(loaded.continuous), "dtype": "float32",
                   "shape": ["N", meta.n_outputs]},
        "state": ({"inputs": list(STATE_INPUTS), "outputs": list(STATE_OUTPUTS),
                   "dtype": "float32", "shape": [1, "N", meta.arch.lstm_hidden]}
                  if loaded.recurrent else None),
        "continuous": loaded.continuous,
        "n_obs": int(len(obs)),
        "obs_source": source,
        **result,
    }
    _merge_parity(parity_path(path), fmt, report)
    return report


def _merge_parity(path: Path, fmt: str, report: dict[str, Any]) -> None:
    """Write this format's entry into `<stem>.parity.json`, keeping other formats' entries."""
    entries: Any = {}
    if path.is_file():
        with contextlib.suppress(rundir.RunFileError, OSError):
            entries = rundir.read_json(path)
    entries = entries if isinstance(entries, dict) else {}
    entries[fmt] = report
    rundir.write_json(path, entries)


# ---------------------------------------------------------------------------- runtime


def ort_session(path: str | os.PathLike, threads: int = 1) -> ort.InferenceSession:
    """A CPU InferenceSession with `threads` intra-op threads and no inter-op pool."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxPolicy:
    """An exported policy under ONNX Runtime (CPU, 1 intra-op thread by default).

    A recurrent model's LSTM state lives here: `forward` feeds it in and keeps what comes
    out; so does the memory of the discrete actions `action` decided (`policies.actions.decide`
    reads it). Call `reset()` at the start of every episode.

    Args:
        path: an .onnx file written by `export_policy`.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path} does not exist; export first with "
                              "export_policy(<run dir or checkpoint>, 'onnx')")
        self.session = ort_session(self.path, threads)
        props = self.session.get_modelmeta().custom_metadata_map
        if META_KEY not in props:
            raise ExportError(f"{self.path} has no {META_KEY!r} metadata; re-export it with "
                              "export_policy")
        self.meta = CheckpointMeta.from_json(props[META_KEY], self.path)
        self.checkpoint_sha256: str | None = props.get(CHECKPOINT_SHA_KEY)
        """SHA-256 of the checkpoint it was exported from (None: exported before it was kept)."""
        self.continuous = self.meta.continuous
        self.output_name = output_name(self.continuous)
        self.image_shape = self.meta.image_shape
        self.recurrent = self.meta.arch.recurrent
        self.state: tuple[np.ndarray, np.ndarray] | None = None
        """The LSTM state after the last `forward` (None: the next frame starts an episode)."""
        self.memory: Memory | None = None
        """What `action` decided so far in the episode (None: the next one starts an episode);
        `policies.actions.decide` reads it."""

    def reset(self) -> None:
        """The next `forward` starts an episode: its state is zero, and `action` remembers no
        action."""
        self.state = None
        self.memory = None

    def forward(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, C) -> float32 (N, A) logits or clipped actions."""
        if not self.recurrent:
            return self.session.run([self.output_name], {INPUT_NAME: images})[0]
        if self.state is None or self.state[0].shape[1] != len(images):
            zeros = np.zeros((1, len(images), self.meta.arch.lstm_hidden), np.float32)
            self.state = (zeros, zeros.copy())
        feeds = {INPUT_NAME: images, **dict(zip(STATE_INPUTS, self.state))}
        out, h, c = self.session.run([self.output_name, *STATE_OUTPUTS], feeds)
        self.state = (h, c)
        return out

    def act(self, image_hwc: np.ndarray) -> int | np.ndarray:
        """One uint8 (H, W, C) image -> a discrete action index or a (2,) float32 action."""
        return self.action(self.forward(image_hwc[None])[0])

    def action(self, output: np.ndarray) -> int | np.ndarray:
        """One row of `forward`'s output -> the action: decided from the logits and the
        actions decided before (`policies.actions.decide`), or the continuous action as it is."""
        if self.continuous:
            return output
        if self.memory is None:
            self.memory = Memory.start(1)
        action = decide(output[None], self.memory)
        self.memory.record(action)
        return int(action[0])
