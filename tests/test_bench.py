"""The env benchmark runs end to end at tiny settings and returns well-formed, positive figures.

No timing thresholds: this machine's speed varies too much for them."""

from __future__ import annotations

import json

import pytest

from eval import bench


@pytest.fixture(scope="module")
def result() -> dict:
    return bench.bench_env(resolutions=(48,), steps=50, resets=20)


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


def test_mesh_robot_lands_in_the_arena() -> None:
    env = bench._env(32)
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
