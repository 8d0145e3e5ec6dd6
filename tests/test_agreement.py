"""How closely a policy follows its distillation teacher: the per-episode counter on hand-made
states and on a real rollout, the pooled summary on hand-made records, which teacher a
checkpoint is compared with, and what `embodied eval` and the notes print."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from envs import ACTION_NAMES
from envs.config import EnvConfig, ObservationConfig
from eval import agreement, metrics
from eval.agreement import AgreementCounter, TeacherSpec
from eval.metrics import format_confusion
from eval.rollout import episode_seed, make_eval_env, run_episode
from training.config import load_config
from training.experts import distillation_teacher
from writeup.build import numbers, render_markdown
from writeup.collect import collect

SOUTH = -math.pi / 2


def _info(heading: float) -> dict:
    """An empty 4 m arena, the robot at (-1.5, 0) facing `heading`, the goal at (1.5, 0)."""
    return {"occupancy": np.ones((40, 40), bool), "grid_half_size_m": 2.0,
            "grid_resolution_m": 0.1, "goal": np.array([1.5, 0.0]),
            "pose": np.array([-1.5, 0.0, heading]), "scene": {"camera_fov_deg": 90.0}}


def test_counter_compares_each_action_with_the_label_of_its_state() -> None:
    counter = AgreementCounter(TeacherSpec().build(continuous=False), n_actions=5)
    counter.reset(_info(0.0))
    counter.observe(_info(0.0), True, 0)  # facing the goal: the teacher drives forward
    counter.observe(_info(SOUTH), False, 4)  # goal 90 degrees left: teacher turns left
    counter.observe(_info(SOUTH), False, 3)
    facts = counter.facts()
    assert facts["teacher_agreement"] == pytest.approx(2 / 3)
    confusion = np.array(facts["teacher_confusion"])
    assert confusion[0, 0] == 1 and confusion[3, 4] == 1 and confusion[3, 3] == 1
    assert confusion.sum() == 3
    counter.reset(_info(0.0))  # a new episode starts from zero counts
    assert counter.facts() == {}


def test_continuous_counter_measures_the_mean_absolute_difference() -> None:
    counter = AgreementCounter(TeacherSpec().build(continuous=True), n_actions=None)
    counter.reset(_info(0.0))
    counter.observe(_info(0.0), True, np.array([0.5, 0.0]))  # teacher: (1, 0)
    counter.observe(_info(0.0), True, np.array([1.0, -0.5]))
    assert counter.facts() == {"teacher_action_mae": pytest.approx((0.5 + 0.5) / 4),
                               "teacher_steps": 2}


def test_the_teacher_itself_agrees_on_every_step_of_a_rollout() -> None:
    """Driven by the very planner that labels, agreement must be exactly 1: a label taken one
    step late or from another state would break it."""
    spec = TeacherSpec(clearance_m=0.2, search="continue")
    env = make_eval_env(EnvConfig(split="heldout", max_steps=120,
                                  observation=ObservationConfig(width=48, height=48)), False)

    class Teacher:
        def __init__(self):
            self.oracle = spec.build(continuous=False)

        def reset(self, info):
            self.oracle.reset(info)

        def act(self, obs, info):
            return self.oracle.act(info, env.unwrapped.goal_in_view())

    try:
        counter = AgreementCounter(spec.build(continuous=False), n_actions=5)
        records = [run_episode(env, Teacher(), episode_seed(4, k), k, agreement=counter).record
                   for k in range(2)]
    finally:
        env.close()
    for rec in records:
        assert rec["teacher_agreement"] == 1.0
        assert np.array(rec["teacher_confusion"]).sum() == rec["steps"]
        assert rec["first_contact_vs_teacher"] == ("as_teacher" if rec["collisions"] else None)
    summary = metrics.summarize(records)["teacher"]
    assert summary["agreement"] == 1.0 and summary["steps"] == sum(r["steps"] for r in records)


def test_a_rollout_records_the_lead_up_to_its_first_contact() -> None:
    """A policy that only drives forward runs into a wall: the record says how the steps
    before that differed from the teacher, never that it turned."""
    env = make_eval_env(EnvConfig(split="heldout", max_steps=120,
                                  observation=ObservationConfig(width=48, height=48)), False)

    class Forward:
        def reset(self, info):
            pass

        def act(self, obs, info):
            return 0

    try:
        counter = AgreementCounter(TeacherSpec(clearance_m=0.15).build(continuous=False),
                                   n_actions=5)
        records = [run_episode(env, Forward(), episode_seed(4, k), k, agreement=counter).record
                   for k in range(3)]
    finally:
        env.close()
    touched = [r for r in records if r["collisions"]]
    assert touched, "a forward-only robot should hit something within 120 steps"
    for rec in records:
        kind = rec["first_contact_vs_teacher"]
        assert (kind in agreement.LEAD_UP_KINDS and kind != "turned_where_teacher_drives"
                if rec["collisions"] else kind is None)


def _record(success: bool, confusion: list[list[int]]) -> dict:
    steps = int(np.sum(confusion))
    return {"success": success, "steps": steps, "teacher_confusion": confusion,
            "teacher_agreement": float(np.trace(confusion) / steps)}


class _Labels:
    """A teacher that answers a fixed sequence of labels, one per step."""

    def __init__(self, labels: list[int]):
        self.labels = list(labels)

    def reset(self, info: dict) -> None:
        pass

    def act(self, info: dict, goal_visible: bool | None = None) -> int:
        return self.labels.pop(0)


# forward 0, forward-left 1, forward-right 2, turn-left 3, turn-right 4
@pytest.mark.parametrize(("labels", "actions", "expected"), [
    ([0, 0, 4, 4, 0], [0, 0, 0, 0, 0], "drove_where_teacher_turns"),
    ([3, 3, 3, 0, 1], [3, 3, 3, 3, 1], "turned_where_teacher_drives"),
    ([4, 0, 1, 1, 1], [4, 0, 0, 1, 1], "other_action"),
    # the turn the policy drove through is five steps back, outside the lead-up
    ([4, 0, 0, 1, 1], [0, 0, 0, 1, 1], "as_teacher"),
    # both kinds of error: the first column that fits wins
    ([0, 0, 4, 0, 0], [0, 3, 0, 0, 0], "drove_where_teacher_turns"),
])
def test_lead_up_to_a_contact_names_how_the_last_steps_differed(
        labels: list[int], actions: list[int], expected: str) -> None:
    counter = AgreementCounter(_Labels(labels), n_actions=5)
    counter.reset(_info(0.0))
    assert counter.lead_up() is None  # no step labelled yet
    for action in actions:
        counter.observe(_info(0.0), True, action)
    assert agreement.LEAD_UP_STEPS == 4
    assert counter.lead_up() == expected


def test_summary_counts_contact_episodes_by_their_lead_up() -> None:
    plain = {"success": True, "path_length": 1.0, "shortest_path_length": 1.0,
             "start_distance": 1.0, "final_distance": 0.1, "collisions": 0, "steps": 5,
             "return": 1.0}
    labelled = _record(True, np.eye(5, dtype=int).tolist())
    records = [{**plain, **labelled, "first_contact_vs_teacher": kind} for kind in
               ("drove_where_teacher_turns", "drove_where_teacher_turns", "as_teacher", None)]
    counts = metrics.summarize(records)["first_contact_vs_teacher"]
    assert counts == {"drove_where_teacher_turns": 2, "turned_where_teacher_drives": 0,
                      "other_action": 0, "as_teacher": 1}
    # no labels, or continuous ones: nothing to count
    assert "first_contact_vs_teacher" not in metrics.summarize([plain])
    continuous = {**plain, "teacher_action_mae": 0.1, "teacher_steps": 5}
    assert "first_contact_vs_teacher" not in metrics.summarize([continuous])


def test_summary_pools_steps_not_episodes() -> None:
    short = np.zeros((5, 5), int)
    short[0, 0] = 1  # one step, agreed
    long = np.zeros((5, 5), int)
    long[3, 3], long[3, 4] = 3, 6  # nine steps, three agreed
    ok, failed = _record(True, short.tolist()), _record(False, long.tolist())
    out = agreement.summarize([ok, failed])
    assert out["steps"] == 10
    assert out["agreement"] == pytest.approx(0.4)  # 4 of 10 steps, not the mean of 1 and 1/3
    assert out["agreement_success"] == 1.0
    assert out["agreement_failure"] == pytest.approx(1 / 3)
    assert np.array(out["confusion"]).sum() == 10
    only_ok = agreement.summarize([ok])
    assert only_ok["agreement_failure"] is None
    assert agreement.summarize([{"success": True, "steps": 3}]) is None
    # a summary without labelled records has no teacher entry at all
    plain = {"success": True, "path_length": 1.0, "shortest_path_length": 1.0,
             "start_distance": 1.0, "final_distance": 0.1, "collisions": 0, "steps": 5,
             "return": 1.0}
    assert "teacher" not in metrics.summarize([plain])
    assert metrics.summarize([{**plain, **ok}])["teacher"]["agreement"] == 1.0


def test_continuous_summary_weights_episodes_by_steps() -> None:
    recs = [{"success": True, "teacher_steps": 1, "teacher_action_mae": 0.5},
            {"success": False, "teacher_steps": 3, "teacher_action_mae": 0.1}]
    out = agreement.summarize(recs)
    assert out["action_mae"] == pytest.approx((0.5 + 0.3) / 4)
    assert out["action_mae_success"] == 0.5 and out["action_mae_failure"] == pytest.approx(0.1)


def test_confusion_table_shows_row_shares_and_counts() -> None:
    text = format_confusion([[3, 1], [0, 0]], ["go", "turn"])
    lines = text.splitlines()
    assert lines[0].split()[-3:] == ["go", "turn", "steps"]
    assert lines[1].split() == ["go", "0.75", "0.25", "4"]
    assert lines[2].split() == ["turn", "-", "-", "0"]


def test_teacher_spec_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="search 'right'"):
        TeacherSpec(search="right")
    with pytest.raises(ValueError, match="clearance"):
        TeacherSpec(clearance_m=-0.1)


def _run_dir(root: Path, **distill) -> Path:
    run = root / "run"
    (run / "checkpoints" / "best").mkdir(parents=True)
    (run / "checkpoints" / "best" / "policy.pt").write_bytes(b"")
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "distill", "distill": distill}))
    return run


def test_a_checkpoint_is_compared_with_its_own_runs_teacher(tmp_path: Path) -> None:
    run = _run_dir(tmp_path, teacher_clearance_m=0.35, teacher_search="continue")
    for target in (run, run / "checkpoints" / "best" / "policy.pt"):
        spec = distillation_teacher(target)
        assert (spec.clearance_m, spec.search) == (0.35, "continue")
        assert spec.source == str(run / "config.yaml")


def test_a_checkpoint_outside_a_run_gets_the_presets_teacher(tmp_path: Path) -> None:
    preset = load_config("default").distill
    loose = tmp_path / "policy.pt"
    loose.write_bytes(b"")
    spec = distillation_teacher(loose)
    assert (spec.clearance_m, spec.search) == (preset.teacher_clearance_m, preset.teacher_search)
    assert spec.source == "preset default"


def test_no_planner_to_compare_with_for_ppo_or_a_broken_config(tmp_path: Path) -> None:
    ppo_teacher = _run_dir(tmp_path / "a", teacher="ppo")
    assert distillation_teacher(ppo_teacher) is None
    pixel_ppo = _run_dir(tmp_path / "b")
    (pixel_ppo / "config.yaml").write_text(yaml.safe_dump({"method": "ppo"}))
    assert distillation_teacher(pixel_ppo) is None
    broken = _run_dir(tmp_path / "c")
    (broken / "config.yaml").write_text("distill: {teacher_search: sideways}\n")
    assert distillation_teacher(broken) is None


def test_a_teacher_that_fails_leaves_the_episode_scored(tmp_path: Path) -> None:
    counter = AgreementCounter(TeacherSpec().build(continuous=False), n_actions=5)
    counter.reset({"pose": np.zeros(3)})  # no map: the planner cannot reset
    counter.observe(_info(0.0), True, 0)
    assert counter.facts() == {
        "teacher_error": "KeyError: \"oracle needs the env's reset info; key 'occupancy' is "
                         "missing\""}
    assert agreement.summarize([{"success": True, **counter.facts()}]) is None


def _summary(teacher: dict | None) -> dict:
    policy = {"episodes": 200, "errors": 0, "success_rate": 0.85, "spl": 0.8}
    if teacher is not None:
        policy["teacher"] = teacher
    return {"policy": policy, "policies": ["policy"], "split": "heldout", "episodes": 200,
            "seed": 1, "teacher": {"clearance_m": 0.2, "search": "left",
                                   "source": "preset default", "actions": list(ACTION_NAMES)}}


def _section(run: Path, tmp_path: Path) -> tuple[str, dict]:
    data = collect(run, tmp_path / "no_bench")
    md = render_markdown(data)
    start = md.index("### Against the teacher")
    end = md.find("\n#", start + 1)
    return md[start:end if end > 0 else None], numbers(data)


def test_notes_print_the_agreement_and_the_confusion_counts(tmp_path: Path) -> None:
    confusion = np.zeros((5, 5), int)
    confusion[0, 0], confusion[3, 3], confusion[3, 4] = 50, 30, 20
    stats = {"steps": 100, "agreement": 0.8, "agreement_success": 0.9,
             "agreement_failure": 0.55, "confusion": confusion.tolist()}
    run = tmp_path / "run"
    (run / "eval_heldout").mkdir(parents=True)
    (run / "eval_heldout" / "summary.json").write_text(json.dumps(_summary(stats)))
    text, keys = _section(run, tmp_path)
    assert "clearance 0.20 m, search `left`; settings from preset default" in text
    assert "action on 0.80 of its 100 steps: 0.90 in successful episodes, 0.55 in failed" in text
    assert "| turn-left | 0 | 0 | 0 | 30 | 20 |" in text
    assert keys["eval_heldout/summary.json:policy.teacher.confusion[3][4]"] == 20
    old = tmp_path / "old"
    (old / "eval_heldout").mkdir(parents=True)
    (old / "eval_heldout" / "summary.json").write_text(json.dumps(_summary(None)))
    text, _ = _section(old, tmp_path)
    assert "predates the comparison with the teacher" in text
    assert f"embodied eval {old}" in text


def test_eval_prints_and_writes_the_agreement(tmp_path: Path, capsys) -> None:
    import gymnasium as gym

    import embodied_cli
    from envs.config import to_dict
    from policies.checkpoint import build_policy, save_checkpoint

    arch = {"features_dim": 32, "channels": [8, 16, 16], "net_arch": [32]}
    env = EnvConfig(max_steps=20, observation=ObservationConfig(width=40, height=40))
    policy = build_policy(gym.spaces.Box(0, 255, (3, 40, 40), np.uint8),
                          gym.spaces.Discrete(5), arch)
    ckpt = save_checkpoint(tmp_path / "policy.pt", policy, arch, {"env": to_dict(env)})
    out = tmp_path / "eval"
    assert embodied_cli.main(["eval", str(ckpt), "--episodes", "2", "--quiet",
                              "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Agreement with the distillation teacher (the camera-aware planner" in printed
    assert "from preset default" in printed and "teacher \\ policy" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["teacher"]["actions"] == list(ACTION_NAMES)
    assert "teacher" not in summary["oracle"]  # only the checkpoint is compared
    records = [json.loads(line) for line in (out / "episodes_policy.jsonl").read_text()
               .splitlines()]
    assert sum(np.sum(r["teacher_confusion"]) for r in records) == summary["policy"][
        "teacher"]["steps"] == sum(r["steps"] for r in records)
