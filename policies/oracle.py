"""The privileged oracle: plans on the occupancy grid from `info`, drives the same actions.

It reads the reset info's grid (`occupancy`, `grid_half_size_m`, `grid_resolution_m`) and goal,
computes a geodesic distance field once per episode, then each step steers towards a waypoint
`lookahead_m` along the field's steepest descent. It sees no image: it is the upper reference
that evaluations report beside the learned policy, and the teacher for distillation.
"""

from __future__ import annotations

import math

import numpy as np

from envs.grid import (
    Grid,
    clearance_cost,
    distance_field,
    heading_error,
    next_waypoint,
    wrap_angle,
)

TURN_IN_PLACE_RAD = 0.7
"""Heading error (rad) beyond which the discrete oracle turns in place rather than driving."""

ROTATING_RAD = 0.05
"""Heading change (rad) in one step beyond which the robot counts as rotating, for the
`search="continue"` teacher: a third of a top-rate turn step, above the jitter of contacts,
and visible between the two stacked frames a student sees."""

IN_VIEW_HEADINGS = 9
"""Headings tried across the view cone by a teacher that keeps a visible goal in view."""

IN_VIEW_PROGRESS = 0.2
"""Share of the lookahead a heading kept towards the goal must gain on the plan's distance
field (so the detour it allows stays short); below it, the plan turns away from the goal."""

SEARCHES = ("left", "continue")
"""How a camera-aware teacher turns while the goal is out of the camera's view."""


def discrete_action(err: float, turn_in_place_rad: float = TURN_IN_PLACE_RAD,
                    arc_rad: float = 0.2) -> int:
    """forward (0), forward-left/right (1/2), turn left/right in place (3/4) by heading error."""
    if abs(err) > turn_in_place_rad:
        return 3 if err > 0 else 4
    if abs(err) > arc_rad:
        return 1 if err > 0 else 2
    return 0


def _erode(free: np.ndarray) -> np.ndarray:
    """Free cells whose 8 neighbours are all free too."""
    padded = np.pad(free, 1, constant_values=False)
    out = free.copy()
    n, m = free.shape
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out &= padded[dy:dy + n, dx:dx + m]
    return out


class Oracle:
    """Privileged grid planner + pure-pursuit steering.

    Call `reset(info)` with each episode's reset info, then `act(info)` every step.

    With `camera_aware=True` it becomes a teacher a memoryless camera student can imitate:
    whenever the goal is outside the camera's field of view and the plan calls for turning in
    place, it turns left (a search the student can reproduce from its image alone) instead of
    whichever way the map says is shorter, which the image does not show. The rule depends on
    the current state only: a teacher that remembers having seen the goal labels the same
    goal-less image "left" early in an episode and "right" later, and a student trained on both
    dithers between them. The plain oracle is the upper reference.

    `search="continue"` changes two things in that rule, both towards what the student's two
    stacked frames show: "out of view" becomes "not in the camera image" (the env's ray test,
    `goal_visible` passed to `act`) rather than "outside 0.8 of the field of view", and while
    the robot is already rotating the search keeps its direction (the map's, when it is not
    rotating), instead of always turning left. With `"left"`, a robot that has turned right
    towards its plan's waypoint until the goal left the image is told to turn back left, then
    right again once the goal shows. Over three training seeds, students of the `"continue"`
    teacher did no better (the README's routes table), so `"left"` stays the default.

    With `clearance_m > 0` it plans on a travel cost that rises near obstacles and walls
    (`envs.grid.clearance_cost`), so its paths keep that margin wherever the layout allows:
    a teacher for a student whose imitation is a little off, which then drives down the middle
    instead of learning to graze. Where a robot already sits close to an obstacle, the cost's
    slope points away from it, so the label leads out of the contact.

    `keep_goal_in_view=True` changes what the teacher does while the camera image shows the
    goal and the plan's waypoint lies outside the view cone around it, so that steering for
    the waypoint would turn the goal out of the image (the shortest way round an obstacle often
    leaves the goal's side): if a heading within that cone (0.8 of the half field of view
    either side of the goal) reaches, `lookahead_m` ahead over free cells, a point at least
    `IN_VIEW_PROGRESS` of that distance lower on the plan's distance field, it steers along the
    best such heading instead. The student then drives with the goal in its image, where it can
    see why, rather than on with no goal in view, where its image cannot tell driving round an
    obstacle from searching. Every such label still descends the distance field. With
    `clearance_m > 0` a heading whose segment crosses a cell inside the margin the plan keeps
    (clearance cost above 1) is not taken: scored at its end point alone, the heading kept in
    view cut corners the plan rounds. Over three training seeds, with and without that margin,
    its students spun a little less on some test sets and touched obstacles in more episodes
    on every one (the README's routes table), so it is off by default. It acts only in a
    `camera_aware` teacher.
    """

    def __init__(self, continuous: bool = False, lookahead_m: float = 0.45,
                 camera_aware: bool = False, fov_margin: float = 0.8,
                 clearance_m: float = 0.0, search: str = "left",
                 keep_goal_in_view: bool = False):
        if search not in SEARCHES:
            raise ValueError(f"search: {search!r}; use one of {SEARCHES}")
        self.continuous = continuous
        self.search = search
        self.keep_goal_in_view = keep_goal_in_view
        self.last_heading = 0.0
        self.clearance_m = clearance_m
        self.lookahead_m = lookahead_m
        self.camera_aware = camera_aware
        self.fov_margin = fov_margin
        self.half_fov_rad = math.pi
        self.grid: Grid | None = None
        self.field: np.ndarray | None = None
        self.cost: np.ndarray | None = None

    @property
    def reads_visibility(self) -> bool:
        """Whether `act` needs `goal_visible` (a camera-aware teacher with `search="continue"`
        or `keep_goal_in_view`)."""
        return self.camera_aware and (self.search == "continue" or self.keep_goal_in_view)

    def reset(self, info: dict) -> None:
        for key in ("occupancy", "grid_half_size_m", "grid_resolution_m", "goal"):
            if key not in info:
                raise KeyError(f"oracle needs the env's reset info; key {key!r} is missing")
        free = np.asarray(info["occupancy"], dtype=bool)
        grid = Grid(free, float(info["grid_half_size_m"]), float(info["grid_resolution_m"]))
        goal = np.asarray(info["goal"], dtype=float)
        # Plan one cell further from obstacles than the robot radius requires (fewer grazing
        # contacts), unless that closes every path.
        safe = Grid(_erode(free), grid.half_size_m, grid.resolution_m)
        safe.free[safe.cell(goal)] = True
        field, cost = self._field(safe, goal)
        start = np.asarray(info["pose"], dtype=float)[:2]
        if not np.isfinite(field[safe.cell(start)]):
            safe, (field, cost) = grid, self._field(grid, goal)
        self.grid, self.field, self.cost = safe, field, cost
        self.last_heading = float(info["pose"][2])
        fov = info.get("scene", {}).get("camera_fov_deg")
        if fov is not None:
            self.half_fov_rad = math.radians(fov) / 2 * self.fov_margin

    def _field(self, grid: Grid, goal: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The plan's distance field to `goal` and the clearance cost it was planned with
        (None without a clearance)."""
        if self.clearance_m <= 0:
            return distance_field(grid, goal), None
        cost = clearance_cost(grid, self.clearance_m)
        return distance_field(grid, goal, cost), cost

    def act(self, info: dict, goal_visible: bool | None = None):
        """The action for the state in `info`; `goal_visible` (whether the camera image shows
        the goal) is needed by a camera-aware teacher with `search="continue"` or
        `keep_goal_in_view`."""
        if self.grid is None:
            raise RuntimeError("call Oracle.reset(reset_info) at the start of each episode")
        pose = np.asarray(info["pose"], dtype=float)
        goal = np.asarray(info["goal"], dtype=float)
        rotation = wrap_angle(pose[2] - self.last_heading)
        self.last_heading = float(pose[2])
        waypoint = next_waypoint(self.grid, self.field, pose[:2], self.lookahead_m)
        if np.linalg.norm(goal - pose[:2]) < self.lookahead_m:
            waypoint = goal
        err = heading_error(pose, waypoint)
        if self.keep_goal_in_view and self.camera_aware:
            err = self._keep_in_view(pose, goal, err, goal_visible)
        if self.camera_aware and abs(err) > TURN_IN_PLACE_RAD:
            left = self._search_left(pose, goal, err, rotation, goal_visible)
            if left is not None:
                if self.continuous:
                    return np.array([0.0, 1.0 if left else -1.0], dtype=np.float32)
                return 3 if left else 4
        if self.continuous:
            linear = max(0.0, math.cos(err)) ** 2
            angular = float(np.clip(2.0 * err, -1.0, 1.0))
            return np.array([linear, angular], dtype=np.float32)
        return discrete_action(err)

    def _keep_in_view(self, pose: np.ndarray, goal: np.ndarray, err: float,
                      goal_visible: bool | None) -> float:
        """The heading error to steer by: the plan's `err`, or, while the image shows the goal
        and the plan's waypoint lies outside the view cone around it, that of a heading which
        keeps the goal in view (`_heading_in_view`) where one gains enough."""
        if goal_visible is None:
            raise ValueError("a teacher with keep_goal_in_view needs goal_visible in act()")
        if not goal_visible or abs(wrap_angle(err - heading_error(pose, goal))) \
                <= self.half_fov_rad:
            return err
        heading = self._heading_in_view(pose, goal)
        return err if heading is None else wrap_angle(heading - pose[2])

    def _heading_in_view(self, pose: np.ndarray, goal: np.ndarray) -> float | None:
        """The heading within the view cone around the goal whose point `lookahead_m` ahead
        lies lowest on the distance field, over free cells outside the plan's clearance margin
        all the way; None when none gains `IN_VIEW_PROGRESS` of the lookahead on where the
        robot stands."""
        grid, field = self.grid, self.field
        here = field[grid.cell(pose[:2])]
        if not np.isfinite(here):
            return None
        bearing = math.atan2(goal[1] - pose[1], goal[0] - pose[0])
        # samples every half cell along the segment: it may miss a cell the segment only
        # clips at a corner, which the plan's eroded grid keeps clear anyway
        along = np.linspace(0.0, 1.0, int(np.ceil(2 * self.lookahead_m / grid.resolution_m)) + 1)
        best, best_heading = here - IN_VIEW_PROGRESS * self.lookahead_m, None
        for heading in bearing + np.linspace(-self.half_fov_rad, self.half_fov_rad,
                                             IN_VIEW_HEADINGS):
            step = self.lookahead_m * np.array([math.cos(heading), math.sin(heading)])
            cells = [grid.cell(pose[:2] + t * step) for t in along[1:]]
            if not all(grid.free[c] for c in cells):
                continue
            # a heading that cuts inside the plan's margin would teach grazing
            if self.cost is not None and any(self.cost[c] > 1.0 for c in cells):
                continue
            value = field[cells[-1]]
            if value < best:
                best, best_heading = value, float(heading)
        return best_heading

    def _search_left(self, pose: np.ndarray, goal: np.ndarray, err: float, rotation: float,
                     goal_visible: bool | None) -> bool | None:
        """Whether a search turns left (True) or right (False); None: the goal is in view, so
        the plan steers."""
        if self.search == "left":
            return True if abs(heading_error(pose, goal)) > self.half_fov_rad else None
        if goal_visible is None:
            raise ValueError('a teacher with search="continue" needs goal_visible in act()')
        if goal_visible:
            return None
        if abs(rotation) > ROTATING_RAD:
            return rotation > 0
        return err > 0
