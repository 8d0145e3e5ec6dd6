"""How a discrete camera policy's output becomes the one action the robot takes.

The five actions (`envs.nav_env.DISCRETE_ACTIONS`) fall into two groups: three that drive
(forward, forward-left, forward-right) and two that turn in place. `decide` first picks the
group that holds more of the policy's probability, then the likeliest action within it; a turn
in place never reverses the robot's turn in place of the step before.

Why not the plain argmax: where the plan leads away from a goal the student just saw, its
probability is spread over the three driving actions, and the single likeliest action is
often "turn left in place" although driving on holds more probability than turning (e.g.
0.26 / 0.30 / 0.03 against 0.41). The argmax then keeps a memoryless student spinning on the
spot, the commonest way it fails. Over the three students of the presets' 20-minute sweep,
deciding drive-or-turn first raised test success from 0.85 / 0.885 / 0.87 to 0.865 / 0.91 /
0.895 on the same 200 held-out episodes, fewer of them turning in place.

Why a turn in place holds its direction: where the goal is in view but the plan detours
around an obstacle first (beyond a gap the plan, keeping its clearance, does not take), the
student turns the way the plan goes until the goal sits at the image's other edge, then turns
back toward it, and a memoryless policy flips left, right, left for the rest of the episode.
Holding the turn makes it go on round instead, until driving holds more probability. Over the
three students of the 105-125 degree lens's sweep, on the same 200 held-out test episodes:
success 0.90 / 0.90 / 0.91 -> 0.905 / 0.915 / 0.915 (8 episodes won, 3 lost) and
collision-free success 0.88 / 0.875 / 0.895 -> 0.885 / 0.90 / 0.90 (8 won, 1 lost).

Every deterministic consumer of a discrete policy decides through this one function: the
PyTorch policy (`policies.checkpoint.LoadedPolicy.predict`), the exported ONNX model's runner
and the deploy node, so they act alike on the same logits; each keeps the action it took last
and forgets it when an episode starts (their `reset()`).
"""

from __future__ import annotations

import numpy as np

from envs.nav_env import DISCRETE_ACTIONS

DRIVES = DISCRETE_ACTIONS[:, 0] > 0
"""Which actions move the robot forward (the rest turn in place)."""
TURNS = np.flatnonzero(~DRIVES)
"""The actions that turn in place (left, right)."""
START = -1
"""The previous action of a robot whose episode starts now."""
DECISION = "drive or turn first, a turn in place held"
"""How `decide` makes logits an action, as an evaluation's summary records it: a cached
evaluation that recorded another rule is scored again, not reused."""
CONTINUOUS_DECISION = "as output"
"""What a continuous policy's summary records: its action is the network's output, clipped."""


def decide(logits: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """(N, A) logits -> (N,) int64 actions: the likeliest action of the likelier group, drive or
    turn in place (ties go to turning); a turn in place that would reverse the robot's turn in
    place of the step before keeps that turn's direction.

    Args:
        logits: the policy's unnormalised log-probabilities.
        previous: (N,) the action each robot took at its last step, `START` where an episode
            starts (None: every robot starts).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(DRIVES):
        raise ValueError(f"logits of shape {logits.shape}; expected (N, {len(DRIVES)})")
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))  # unnormalised: sums compare
    drive = np.where(DRIVES, probs, -1.0)
    turn = np.where(DRIVES, -1.0, probs)
    drives = probs[:, DRIVES].sum(axis=1) > probs[:, ~DRIVES].sum(axis=1)
    actions = np.where(drives, drive.argmax(axis=1), turn.argmax(axis=1)).astype(np.int64)
    if previous is None:
        return actions
    previous = np.asarray(previous, dtype=np.int64)
    if previous.shape != actions.shape:
        raise ValueError(f"previous actions of shape {previous.shape}; expected "
                         f"({len(actions)},), one per row of logits")
    reverses = np.isin(actions, TURNS) & np.isin(previous, TURNS) & (actions != previous)
    return np.where(reverses, previous, actions)
