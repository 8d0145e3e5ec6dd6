"""How it fails: the failure modes of the held-out episodes, clean driving, a strip per mode."""

from __future__ import annotations

from writeup.collect import FAILURES_INDEX, failure_videos
from writeup.commands import Commands, fill, produce
from writeup.doc import Doc, is_number
from writeup.sections.common import HELDOUT, image, join, table

MODE_MEANINGS: dict[str, str] = {
    "error": "the episode crashed",
    "ended_by_contact": "a terminate-on-contact rule ended it",
    "stuck_in_contact": "in contact for most of its steps, or pinned for a long unbroken run",
    "never_saw_goal": "the beacon never showed in the camera image",
    "approached_timed_out": "came close to the beacon, then ran out of steps",
    "turning_in_place": "never committed to a direction: turned in place or drove only the "
                        "recovery drives that end a spin, or hardly moved",
    "other": "saw the beacon, kept clear, drove its own way, never came close",
    "unclassified": "recorded before episodes were classified",
}
"""What each mode of `eval/failures.py` means, in words (its thresholds live there)."""

NAMES = ("policy", "oracle")
"""The rows of the counts: the trained policy and the privileged planner on the same episodes."""

CLEAN_COLUMNS: tuple[tuple[str, str], ...] = (
    ("collision_free_success", "collision-free success"),
    ("contact_episode_rate", "episodes with any contact"),
    ("collisions_per_episode", "contact steps / episode"))


def failures(doc: Doc, cmd: Commands) -> str:
    if not doc.has(HELDOUT):
        return join("## How it fails", fill(cmd.eval()))
    names = [n for n in NAMES if isinstance(doc.value(HELDOUT, n), dict)]
    return join(
        "## How it fails",
        "Evaluation classifies every failed episode from its trajectory, by the first rule "
        "that matches, most physical cause first (`eval/failures.py`): a robot pinned against "
        "a wall facing away from the beacon counts as stuck, not as a search failure. Counts "
        "are over the held-out episodes of the table above.",
        _modes(doc, cmd, names), _clean(doc, cmd, names), _teacher(doc, cmd),
        _strips(doc, cmd))


def _keys_of_all(doc: Doc, names: list[str], field: str) -> list[str]:
    """The keys of each policy's `field` dict in the summary, in first-seen order."""
    keys: list[str] = []
    for name in names:
        keys += [k for k in doc.keys(HELDOUT, name, field) if k not in keys]
    return keys


def _modes(doc: Doc, cmd: Commands, names: list[str]) -> str:
    modes = _keys_of_all(doc, names, "failure_modes")
    if not modes:
        return ("The summary holds no failure modes (it was written before evaluation "
                f"classified failures). {fill(cmd.eval())}")
    rows = [[f"`{mode}`", MODE_MEANINGS.get(mode, "")]
            + [doc.num(HELDOUT, name, "failure_modes", mode, kind="int") for name in names]
            for mode in modes]
    rows.append(["episodes scored", ""]
                + [doc.num(HELDOUT, name, "episodes", kind="int") for name in names])
    return table(["failure mode", "meaning", *names], rows)


def _clean(doc: Doc, cmd: Commands, names: list[str]) -> str:
    rows = [[name, *(doc.ci(HELDOUT, name, key, kind="rate") for key, _ in CLEAN_COLUMNS)]
            for name in names]
    text = ("Driving clean: collision-free success counts an episode only when it reached the "
            "goal without a single step in contact; the contact rate is the share of episodes "
            "that touched an obstacle or wall at all (95 % bootstrap intervals).")
    if all(doc.value(HELDOUT, n, "collision_free_success") is None for n in names):
        return join(text, "The summary predates these metrics. " + fill(cmd.eval()))
    return join(text, table(["policy", *(label for _, label in CLEAN_COLUMNS)], rows),
                _contact_sides(doc, names), _contact_lead_up(doc, names))


def _counts(doc: Doc, names: list[str], field: str) -> tuple[list[str], list[list[str]]]:
    """The keys of the count dicts under `field` in the summary, and a row for each policy that
    has one (a summary written before evaluation recorded `field` has none): its name, then its
    count under each key."""
    names = [n for n in names if isinstance(doc.value(HELDOUT, n, field), dict)]
    keys = _keys_of_all(doc, names, field)
    return keys, [[n, *(doc.num(HELDOUT, n, field, k, kind="int") for k in keys)]
                  for n in names]


def _contact_sides(doc: Doc, names: list[str]) -> str:
    """Where each policy's episodes with contact first touched something (none for a summary
    written before evaluation recorded it)."""
    sides, rows = _counts(doc, names, "first_contact_sides")
    if not rows:
        return ""
    for row in rows:
        row.append(doc.num(HELDOUT, row[0], "first_contact_in_recovery", kind="int"))
    return join("Where the episodes with contact first touched something, by the bearing of "
                "that contact off the robot's heading (sides as `CONTACT_SIDES_DEG` in "
                "`eval/metrics.py` draws them: ahead is where the camera looks), and how many "
                "first touched on a recovery drive, the drive that ends a loop of turns in "
                "place (`policies/actions.py`):",
                table(["policy", *sides, "on a recovery drive"], rows))


LEAD_UP_LABELS = {
    "drove_where_teacher_turns": "drove where the teacher turns in place",
    "turned_where_teacher_drives": "turned in place where the teacher drives",
    "other_action": "another drive than the teacher's",
    "as_teacher": "the teacher's action every step",
}
"""Column heads for `eval.agreement.LEAD_UP_KINDS` (a key not listed shows as written)."""


def _contact_lead_up(doc: Doc, names: list[str]) -> str:
    """How each labelled policy's steps up to its first contact differed from its teacher's
    (none for a summary written before evaluation recorded it)."""
    kinds, rows = _counts(doc, names, "first_contact_vs_teacher")
    if not rows:
        return ""
    return join("What the policy did in the steps up to each first contact (the last "
                "`LEAD_UP_STEPS` of `eval/agreement.py`, the touching step included) against "
                "the action its distillation teacher (below) takes in the same states; an "
                "episode counts under the first column that fits it, from the left:",
                table(["policy", *(LEAD_UP_LABELS.get(k, k) for k in kinds)], rows))


def _teacher(doc: Doc, cmd: Commands) -> str:
    """How closely the policy followed its distillation teacher (`eval/agreement.py`)."""
    stats = ("policy", "teacher")
    head = "### Against the teacher"
    confusion = doc.value(HELDOUT, *stats, "confusion")
    if not isinstance(confusion, list):
        if doc.value(HELDOUT, *stats, "action_mae") is not None:
            return join(head, "The policy's mean absolute difference from the (linear, "
                        "angular) command of the camera-aware planner it was distilled from: "
                        f"{doc.num(HELDOUT, *stats, 'action_mae')} over all steps; "
                        f"{doc.num(HELDOUT, *stats, 'action_mae_success')} in successful "
                        f"episodes, {doc.num(HELDOUT, *stats, 'action_mae_failure')} in "
                        "failed ones.")
        return join(head, "The summary predates the comparison with the teacher. "
                    + fill(cmd.eval()))
    size = len(confusion)
    names = doc.value(HELDOUT, "teacher", "actions")
    if not isinstance(names, list) or len(names) != size:
        names = [f"action {i}" for i in range(size)]
    rows = [[str(name), *(doc.num(HELDOUT, *stats, "confusion", i, j, kind="int")
                          for j in range(size))]
            for i, name in enumerate(names)]
    keep_in_view = (", a visible goal kept in view where a heading allows"
                    if doc.value(HELDOUT, "teacher", "keep_goal_in_view") else "")
    return join(
        head,
        "Evaluation also labels every state the policy visited with the action of the "
        "camera-aware planner it was distilled from (clearance "
        f"{doc.num(HELDOUT, 'teacher', 'clearance_m', kind='metric')} m, search "
        f"`{doc.text(HELDOUT, 'teacher', 'search')}`"
        f"{keep_in_view}; settings from "
        f"{doc.text(HELDOUT, 'teacher', 'source')}). The policy took the teacher's action on "
        f"{doc.num(HELDOUT, *stats, 'agreement')} of its "
        f"{doc.num(HELDOUT, *stats, 'steps', kind='int')} steps: "
        f"{doc.num(HELDOUT, *stats, 'agreement_success')} in successful episodes, "
        f"{doc.num(HELDOUT, *stats, 'agreement_failure')} in failed ones. Rows are what the "
        "teacher asked for, columns what the policy did, in steps:",
        table(["teacher's action", *map(str, names)], rows))


def _strips(doc: Doc, cmd: Commands) -> str:
    if not doc.has(FAILURES_INDEX):
        return join("### Failure videos",
                    "Frame strips of failed episodes come from the failure videos. "
                    + produce(cmd.failures()))
    index = FAILURES_INDEX
    parts = ["### Failure videos",
             f"`embodied video --failures` ran {doc.num(index, 'scanned_episodes', kind='int')} "
             f"`{doc.text(index, 'split')}` episodes of `{doc.text(index, 'policy')}` "
             f"(evaluation seed {doc.num(index, 'seed', kind='int')}), the same episodes as "
             f"the evaluation with that seed, found "
             f"{doc.num(index, 'failures_found', kind='int')} failed and rendered the first of "
             f"each mode before any mode twice (index: `{index}`). Each strip shows frames "
             "evenly spaced over one episode: the robot's camera, the top-down map (goal "
             "ring, path so far) and the chase camera behind the robot."]
    index_seed, summary_seed = doc.value(FAILURES_INDEX, "seed"), doc.value(HELDOUT, "seed")
    if is_number(index_seed) and is_number(summary_seed) and index_seed != summary_seed:
        parts.append(f"_These videos come from evaluation seed "
                     f"{doc.num(FAILURES_INDEX, 'seed', kind='int')}, the counts above from "
                     f"seed {doc.num(HELDOUT, 'seed', kind='int')}: different episodes. "
                     f"{produce(cmd.failures())}_")
    shown = failure_videos(doc.value(FAILURES_INDEX))
    if not shown:
        parts.append("No failed episode to show among those it ran.")
    for i, video in shown:
        mode = doc.text(FAILURES_INDEX, "videos", i, "failure_mode")
        strip = image(doc, f"failure_{video['failure_mode']}", f"Failed episode: {mode}")
        parts += [f"#### `{mode}`",
                  f"Episode {doc.num(FAILURES_INDEX, 'videos', i, 'episode', kind='int')} "
                  f"(reset seed {doc.text(FAILURES_INDEX, 'videos', i, 'seed')}, "
                  f"{doc.num(FAILURES_INDEX, 'videos', i, 'steps', kind='int')} steps), "
                  f"video `{doc.text(FAILURES_INDEX, 'videos', i, 'file')}`."
                  + ("" if strip else " Its video did not decode; rerun "
                     f"`{cmd.failures()}`."),
                  strip]
    return join(*parts)
