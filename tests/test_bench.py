"""The env benchmark runs end to end at tiny settings and returns well-formed, positive figures;
its timing helpers charge time where it is spent.

No timing thresholds: this machine's speed varies too much for them."""

from __future__ import annotations

import json
import time

import pytest

from envs.config import RandomizationConfig
from eval import bench
from eval import bench_env as alt
from eval import bench_render as rend


@pytest.fixture(scope="module")
def result() -> dict:
    return bench.bench_env(resolutions=(48,), steps=50, resets=20, alternatives=False)


@pytest.fixture(scope="module")
def alternatives() -> dict:
    return bench._alternatives(steps=40, seed=0)


def test_bench_env_keys_and_types(result: dict) -> None:
    assert set(result) == {"machine", "settings", "resolutions", "naive_mesh_robot", "memory",
                           "targets"}
    machine = result["machine"]
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert {"python", "pybullet", "numpy", "gymnasium"} <= machine.keys()
    assert result["settings"]["resolutions"] == [48]
    json.dumps(result, allow_nan=False)  # the caller writes it as strict JSON


def test_bench_env_figures_are_positive(result: dict) -> None:
    (row,) = result["resolutions"]
    assert row["resolution"] == 48
    for key in ("env_steps_per_s", "render_fps", "env_vs_bound"):
        assert isinstance(row[key], float) and row[key] > 0, key
    naive = result["naive_mesh_robot"]
    assert naive["resolution"] == 64 and naive["env_steps_per_s"] > 0
    assert naive["speedup_of_primitive_robot"] is None  # 64x64 was not among the resolutions
    memory = result["memory"]
    assert memory["resets"] == 20 and memory["reset_ms"] > 0
    assert isinstance(memory["rss_growth_mb"], float)


def test_format_env_bench_shows_figures_and_targets(result: dict) -> None:
    text = bench.format_env_bench(result)
    assert "48x48" in text and "racecar" in text and "RSS growth" in text
    assert ">= 80%" in text and "< 5 MB" in text


def test_alternatives_are_complete_and_printed(alternatives: dict) -> None:
    a = alternatives
    json.dumps(a, allow_nan=False)
    bare = a["bare_scene"]
    assert bare["env_steps_per_s"] > 0 and bare["bare_steps_per_s"] > 0
    assert bare["env_vs_bare"] == pytest.approx(
        bare["env_steps_per_s"] / bare["bare_steps_per_s"], rel=0.01)
    parts = a["breakdown"]["parts_ms"]
    assert set(parts) == set(alt.PARTS) and parts["render"] > 0 and parts["drive"] > 0
    assert 0 < a["breakdown"]["non_render_fraction"] < 1
    names = [row["variant"] for row in a["geometry_variants"]]
    assert len(names) == len(alt.GEOMETRY_VARIANTS) + 1 and alt.NO_TEXTURES in names
    for row in a["geometry_variants"]:
        for driver in alt.DRIVERS:
            assert row[f"render_fps|{driver}"] > 0 and row[f"vs_chosen|{driver}"] > 0
    chosen = next(row for row in a["geometry_variants"] if row["variant"] == alt._CHOSEN)
    assert all(chosen[f"vs_chosen|{d}"] == 1.0 for d in alt.DRIVERS)
    assert [row["physics_hz"] for row in a["physics_rates"]["rates"]] == [60, 30, 20, 10]
    renderers = a["renderers"]
    assert renderers["tiny_renderer_fill"]["empty_frame_us"] > 0
    assert 0 < renderers["covered_fraction"] <= 1
    egl = renderers["egl_llvmpipe"]
    assert isinstance(egl["available"], bool)
    assert egl["env_steps_per_s"] > 0 if egl["available"] else egl["reason"]
    assert a["miniworld_gap"]["miniworld_steps_per_s"] == list(rend.MINIWORLD_STEPS_PER_S)
    lens = a["lens"]
    assert lens["fov_deg"] == list(RandomizationConfig().camera_fov_deg)
    assert lens["narrow_fov_deg"] == list(bench.NARROW_LENS_DEG) != lens["fov_deg"]
    assert lens["env_vs_narrow"] == pytest.approx(
        lens["env_steps_per_s"] / lens["narrow_env_steps_per_s"], rel=0.01)
    assert lens["render_fps"] > 0 and lens["narrow_render_fps"] > 0
    # one side-by-side run times the env once, for both comparisons
    assert lens["env_steps_per_s"] == a["bare_scene"]["env_steps_per_s"]
    assert lens["render_fps"] == a["bare_scene"]["env_render_fps"]
    # the bare scene renders from the env's mid camera, whatever the ranges are
    fov = sum(RandomizationConfig().camera_fov_deg) / 2
    assert f"{fov:g} degree field of view" in a["bare_scene"]["scene"]
    text = "\n".join(bench._format_alternatives(a))
    for phrase in ("bare PyBullet scene", "deg vs 80-95 deg, side by side", "outside the renderer",
                   "first release", "60 Hz",
                   "TinyRenderer 64x64", "EGL plugin on llvmpipe", "Miniworld"):
        assert phrase in text, phrase


def test_step_breakdown_parts_add_up_to_the_step() -> None:
    env = alt._env(16)
    got = alt.step_breakdown(env, 30, seed=1)
    env.close()
    assert sum(got["parts_ms"].values()) == pytest.approx(got["step_ms"], abs=1e-3)
    assert got["steps"] == 30 and got["resets"] >= 0
    assert "_render" not in vars(env)  # the timing wrappers are gone


def test_part_timer_charges_nested_time_to_the_inner_part() -> None:
    timer = alt._PartTimer()
    inner = timer.wrap(lambda: time.sleep(0.02), "render")
    outer = timer.wrap(lambda: (time.sleep(0.01), inner()), "reset")
    outer()
    assert timer.seconds["render"] == pytest.approx(0.02, abs=0.008)
    assert timer.seconds["reset"] == pytest.approx(0.01, abs=0.008)


def test_bare_scene_drives_and_renders() -> None:
    bare = alt.BareScene(16, seed=0)
    start = bare.frame().copy()
    bare(5)
    assert bare.t == 5 and (bare.frame() != start).any()  # the camera moved
    bare.close()


def test_miniworld_gap_arithmetic() -> None:
    breakdown = {"step_ms": 1.0, "parts_ms": {"render": 0.8}}
    tiny = {"empty_frame_us": 100.0, "ns_per_filled_pixel": 150.0}
    egl = {"available": True, "fill": {"256": {"ns_per_filled_pixel": 2.0}}}
    gap = rend.miniworld_gap(0.9, breakdown, tiny, egl, covered=0.5, pixels=4000)
    equivalent = 0.9 * rend.BARE_SCENE_CITED_STEPS_PER_S
    fastest, slowest = rend.MINIWORLD_STEPS_PER_S[1], rend.MINIWORLD_STEPS_PER_S[0]
    assert gap["env_vs_miniworld"] == [round(equivalent / fastest, 3),
                                       round(equivalent / slowest, 3)]
    target = equivalent / fastest  # ms: the 1 ms step shrunk to Miniworld's pace
    assert gap["target_step_ms"] == pytest.approx(target, abs=1e-4)
    needed = 1e6 * (target - 0.2 - 0.1) / 2000
    assert gap["needed_ns_per_filled_pixel"] == pytest.approx(needed, abs=0.01)
    effective = 1e6 * (0.8 - 0.1) / 2000  # the env's render over its covered pixels
    assert gap["env_ns_per_covered_pixel"] == pytest.approx(effective, abs=0.01)
    assert gap["fill_speedup_needed"] == pytest.approx(effective / needed, abs=0.01)
    assert gap["llvmpipe_ns_per_filled_pixel"] == 2.0
    ahead = rend.miniworld_gap(2.0, breakdown, tiny, egl, covered=0.5, pixels=4000)
    assert ahead["target_step_ms"] == 1.0  # already faster: nothing to shrink


def test_mesh_robot_lands_in_the_arena() -> None:
    env = alt._env(32)
    _, info = env.reset(seed=0)
    body = bench.add_mesh_robot(env, info)
    (x, y, _), _ = env._client.getBasePositionAndOrientation(body)
    limit = env.cfg.arena_half_size_m
    assert abs(x) < limit and abs(y) < limit
    env.close()


def test_format_oracle_bench() -> None:
    result = {"split": "heldout", "episodes": 10, "errors": 0, "oracle_heldout_success": 1.0,
              "success_ci95": [1.0, 1.0], "spl": 0.91, "collisions_per_episode": 0.2,
              "mean_steps": 50.0, "wall_s": 1.0, "target": 0.95}
    text = bench.format_oracle_bench(result)
    assert "100%" in text and "SPL 0.910" in text and "ok" in text


def test_bench_oracle_small() -> None:
    result = bench.bench_oracle(episodes=3)
    assert result["split"] == "heldout" and result["episodes"] + result["errors"] == 3
    assert 0.0 <= result["oracle_heldout_success"] <= 1.0
    assert result["spl"] is not None and result["collisions_per_episode"] >= 0
    json.dumps(result, allow_nan=False)


def test_dagger_throughput_is_measured_between_iterations() -> None:
    """The DAgger rate of `embodied bench train` runs the preset's loop (here the tiny one) and
    times only from the end of its first iteration to the end of its last."""
    from training.bench import _distill_steps_per_s
    from training.config import load_config

    rate = _distill_steps_per_s(load_config("tiny"), iterations=2)
    assert 0 < rate < 1e6


def test_format_train_prints_the_world_builds_and_the_schedules() -> None:
    from training.bench import format_train

    result = {"steps": 4096, "target_steps_per_s": 400, "speedup": 2.0, "rows": [
        {"layout": "naive", "steps_per_s": 100.0}, {"layout": "tuned", "steps_per_s": 200.0}],
        "world_builds": {"rows": [
            {"label": "first release's world build", "ppo_steps_per_s": 150.0,
             "distill_steps_per_s": 90.0},
            {"label": "today's world build (fast)", "ppo_steps_per_s": 210.0,
             "distill_steps_per_s": 99.0}], "ppo_speedup": 1.4, "distill_speedup": 1.1},
        "distill_schedules": {"rows": [
            {"label": "collect, then fit (taking turns)", "distill_steps_per_s": 100.0},
            {"label": "fit while collecting (the default)", "distill_steps_per_s": 145.0}],
            "speedup": 1.45}}
    text = format_train(result)
    assert "fit while collecting (the default)      145.0 steps/s" in text
    assert "fitting while collecting over taking turns: 1.45x" in text
    assert "today's world build (fast)         PPO  210.0 steps/s   DAgger   99.0 steps/s" in text
    assert "today's build over the first release's: PPO 1.40x, DAgger 1.10x" in text
