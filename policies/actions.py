"""How a discrete camera policy's output becomes the one action the robot takes.

The five actions (`envs.nav_env.DISCRETE_ACTIONS`) fall into two groups: three that drive
(forward, forward-left, forward-right) and two that turn in place. `decide` first picks the
group that holds more of the policy's probability, then the likeliest action within it; a turn
in place never reverses the robot's turn in place of the step before, and a robot that has
turned in place a whole revolution's worth within the last 6 s drives for a while.

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

Why a full turn in place ends in a drive: a student that has turned in place a whole
revolution's worth (`FULL_TURN_STEPS` turns, at the env's top turn rate) within the last
`TURN_WINDOW_STEPS` steps is in a loop it will not leave by itself. Typically it sees the goal
as a sliver behind an obstacle whose way round the plan takes to one side, drives a few steps
that way until the goal leaves the image, and then turns in place (the teacher's search label
for goal-less images) round to the goal again: most of a revolution and a few drives, over and
over, each loop gaining a few centimetres. It then drives its likeliest driving action for
`RECOVERY_DRIVES` steps, as a robot's navigation stack runs a recovery behaviour once its
progress checker sees no progress, and the new viewpoint usually breaks the loop. Counting the
turns over a window rather than in a row is what catches that loop: its few drives reset a
count of turns in a row just short of a revolution every time, so the recovery never came.

Both lengths were chosen on other episodes than the test's (evaluation seed 3, the presets'
three students, success by seed): turns in a row with a 20-step drive 0.905 / 0.89 / 0.91;
a 60-step window with a 20 / 30 / 40-step drive 0.915 / 0.90 / 0.915, 0.94 / 0.915 / 0.91,
0.94 / 0.925 / 0.905; a 50 / 70 / 80-step window did no better than 60. On the 200 held-out
test episodes (evaluation seed 1), the same three students: success 0.93 / 0.915 / 0.915 ->
0.94 / 0.945 / 0.935 (17 episodes won, 5 lost), collision-free success 0.915 / 0.895 / 0.91
-> 0.915 / 0.925 / 0.915, SPL 0.885 / 0.890 / 0.872 -> 0.885 / 0.912 / 0.881; on evaluation
seed 2, success 0.945 / 0.89 / 0.93 -> 0.96 / 0.91 / 0.94 (18 won, 9 lost). The price is
contact: episodes with any contact 0.04 / 0.03 / 0.025 -> 0.06 / 0.04 / 0.05 (seed 2: 0.035 /
0.085 / 0.03 -> 0.045 / 0.10 / 0.035), most of it in episodes that were lost to turning in
place before and whose recovery drive now meets an obstacle. Driving straight ahead instead
of the likeliest driving action touched obstacles in about twice as many episodes.

Every deterministic consumer of a discrete policy decides through this one function: the
PyTorch policy (`policies.checkpoint.LoadedPolicy.predict`), the exported ONNX model's runner
and the deploy node, so they act alike on the same logits; each keeps a `Memory` of the
actions it took and starts it afresh when an episode starts (their `reset()`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from envs.config import EnvConfig
from envs.nav_env import DISCRETE_ACTIONS

DRIVES = DISCRETE_ACTIONS[:, 0] > 0
"""Which actions move the robot forward (the rest turn in place)."""
TURNS = np.flatnonzero(~DRIVES)
"""The actions that turn in place (left, right)."""
START = -1
"""The previous action of a robot whose episode starts now."""
_DEFAULT_ENV = EnvConfig()
FULL_TURN_STEPS = math.ceil(2 * math.pi * _DEFAULT_ENV.control_hz / _DEFAULT_ENV.max_angular_rps)
"""Turns in place that make a whole revolution at the default env's top turn rate (40 at
1.6 rad/s and 10 Hz): after that many within `TURN_WINDOW_STEPS`, the robot drives
(`RECOVERY_DRIVES`)."""
TURN_WINDOW_STEPS = 60
"""Steps (6 s at 10 Hz) over which turns in place are counted towards a revolution."""
RECOVERY_DRIVES = 30
"""Steps a robot drives (its likeliest driving action each step) once it has turned a whole
revolution in place: 3 s, up to 1.5 m at top speed."""
DECISION = "drive or turn first, a turn in place held, a drive after a full turn within 6 s"
"""How `decide` makes logits an action, as an evaluation's summary records it: a cached
evaluation that recorded another rule is scored again, not reused."""
CONTINUOUS_DECISION = "as output"
"""What a continuous policy's summary records: its action is the network's output, clipped."""


@dataclass
class Memory:
    """What `decide` remembers of each of N robots' episodes: update it with `record` after
    every step, with the actions the robots really took."""

    previous: np.ndarray
    """(N,) the action each robot took at its last step, `START` where an episode starts."""
    recent_turns: np.ndarray
    """(N, TURN_WINDOW_STEPS) bool, oldest first: which of each robot's last steps turned in
    place, counting only steps since its episode or its last recovery drive began."""
    recovering: np.ndarray
    """(N,) recovery drives still to take after this step's."""

    @classmethod
    def start(cls, n: int) -> Memory:
        """N robots whose episodes all start now."""
        return cls(np.full(n, START, np.int64), np.zeros((n, TURN_WINDOW_STEPS), bool),
                   np.zeros(n, np.int64))

    def __len__(self) -> int:
        return len(self.previous)

    @property
    def turning(self) -> np.ndarray:
        """(N,) turns in place among each robot's last `TURN_WINDOW_STEPS` steps."""
        return self.recent_turns.sum(axis=1)

    def due(self) -> np.ndarray:
        """(N,) bool: the robots whose next action is a recovery drive."""
        return (self.recovering > 0) | (self.turning >= FULL_TURN_STEPS)

    def record(self, actions: np.ndarray, ended: np.ndarray | None = None) -> None:
        """The robots took `actions` (N,); those where `ended` is true start a new episode."""
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != self.previous.shape:
            raise ValueError(f"actions of shape {actions.shape}; expected ({len(self)},)")
        begins = self.turning >= FULL_TURN_STEPS
        self.recovering = np.maximum(np.where(begins, RECOVERY_DRIVES, self.recovering) - 1, 0)
        self.recent_turns = np.concatenate([self.recent_turns[:, 1:], ~DRIVES[actions, None]],
                                           axis=1)
        self.recent_turns[begins] = False  # the loop's turns are spent on this recovery
        self.previous = actions.copy()
        if ended is not None:
            ended = np.asarray(ended, dtype=bool)
            self.previous[ended] = START
            self.recent_turns[ended] = False
            self.recovering[ended] = 0


def decide(logits: np.ndarray, memory: Memory | None = None) -> np.ndarray:
    """(N, A) logits -> (N,) int64 actions: the likeliest action of the likelier group, drive or
    turn in place (ties go to turning); a turn in place that would reverse the robot's turn in
    place of the step before keeps that turn's direction; a robot due a recovery drive
    (`Memory.due`) takes its likeliest driving action. `memory` is read, not changed.

    Args:
        logits: the policy's unnormalised log-probabilities.
        memory: what each robot did so far in its episode (None: every robot starts, and the
            decision of each row depends on its logits alone).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2 or logits.shape[1] != len(DRIVES):
        raise ValueError(f"logits of shape {logits.shape}; expected (N, {len(DRIVES)})")
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))  # unnormalised: sums compare
    drive = np.where(DRIVES, probs, -1.0).argmax(axis=1)
    turn = np.where(DRIVES, -1.0, probs).argmax(axis=1)
    drives = probs[:, DRIVES].sum(axis=1) > probs[:, ~DRIVES].sum(axis=1)
    actions = np.where(drives, drive, turn).astype(np.int64)
    if memory is None:
        return actions
    if len(memory) != len(actions):
        raise ValueError(f"a memory of {len(memory)} robots; expected {len(actions)}, one per "
                         "row of logits")
    previous = memory.previous
    reverses = np.isin(actions, TURNS) & np.isin(previous, TURNS) & (actions != previous)
    actions = np.where(reverses, previous, actions)
    return np.where(memory.due(), drive, actions).astype(np.int64)
