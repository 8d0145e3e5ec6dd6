"""The notes' "How it fails" section from hand-made artifacts: counts and clean-driving
intervals from summary.json, a frame strip per mode from the failure-video index, and the
commands named where an input is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest

from writeup.build import numbers, render_markdown, write_writeup
from writeup.collect import FAILURES_INDEX, collect, failure_videos
from writeup.figures import FAILURE_FRAME_WIDTH_PX, FAILURE_STRIP_FRAMES

MODES = {"error": 0, "ended_by_contact": 0, "stuck_in_contact": 13, "never_saw_goal": 2,
         "approached_timed_out": 1, "turning_in_place": 17, "other": 0}


def _summary(modes: dict[str, int] | None = MODES, seed: int = 1) -> dict[str, Any]:
    policy = {"episodes": 200, "errors": 0, "success_rate": 0.835, "spl": 0.71,
              "collision_free_success": 0.781, "collision_free_success_ci95": [0.722, 0.836],
              "contact_episode_rate": 0.137, "contact_episode_rate_ci95": [0.091, 0.186],
              "collisions_per_episode": 8.04, "collisions_per_episode_ci95": [5.1, 11.3]}
    oracle = {"episodes": 200, "errors": 0, "success_rate": 0.995, "spl": 0.93,
              "collision_free_success": 0.99, "collision_free_success_ci95": [0.975, 1.0],
              "contact_episode_rate": 0.01, "contact_episode_rate_ci95": [0.0, 0.025],
              "collisions_per_episode": 0.18, "collisions_per_episode_ci95": [0.02, 0.4]}
    if modes is not None:
        policy.update(first_contact_sides={"ahead": 9, "beside": 17, "behind": 1},
                      first_contact_in_recovery=8,
                      first_contact_vs_teacher={"drove_where_teacher_turns": 11,
                                                "turned_where_teacher_drives": 2,
                                                "other_action": 6, "as_teacher": 8})
        oracle.update(first_contact_sides={"ahead": 0, "beside": 2, "behind": 0},
                      first_contact_in_recovery=0)
        policy["failure_modes"] = dict(modes)
        oracle["failure_modes"] = {**dict.fromkeys(modes, 0), "approached_timed_out": 1}
    return {"policy": policy, "oracle": oracle, "policies": ["policy", "oracle"],
            "split": "heldout", "episodes": 200, "seed": seed, "spl_vs_oracle": 0.76}


def _run(tmp_path: Path, summary: dict[str, Any] | None = None) -> Path:
    run = tmp_path / "run"
    (run / "eval_heldout").mkdir(parents=True)
    (run / "eval_heldout" / "summary.json").write_text(json.dumps(summary or _summary()))
    return run


def _video(path: Path, frames: int, shade: int) -> None:
    """A small decodable MP4 whose frames differ (a bar moving right)."""
    out = np.full((frames, 48, 96, 3), shade, dtype=np.uint8)
    for i in range(frames):
        out[i, :, (i * 9) % 96] = 255
    iio.imwrite(path, out, extension=".mp4", fps=10, codec="libx264")


def _index(run: Path, videos: list[dict[str, Any]], seed: int = 1) -> None:
    folder = run / "failures_heldout"
    folder.mkdir()
    for v in videos:
        if "/" not in v["file"]:
            _video(folder / v["file"], v["frames"], 40 + 30 * len(v["failure_mode"]) % 200)
    index = {"policy": "checkpoint", "checkpoint": "run/best/policy.pt", "split": "heldout",
             "seed": seed, "requested": 3, "max_episodes": 200, "scanned_episodes": 57,
             "scanned_failure_modes": MODES, "failures_found": 9, "videos": videos}
    (folder / "index.json").write_text(json.dumps(index))


VIDEOS = [
    {"episode": 4, "seed": 1000100004, "failure_mode": "turning_in_place",
     "file": "failure_0004_turning_in_place.mp4", "frames": 12, "steps": 11},
    {"episode": 9, "seed": 1000100009, "failure_mode": "stuck_in_contact",
     "file": "failure_0009_stuck_in_contact.mp4", "frames": 9, "steps": 8},
    {"episode": 21, "seed": 1000100021, "failure_mode": "turning_in_place",
     "file": "failure_0021_turning_in_place.mp4", "frames": 7, "steps": 6},
]


def section(md: str) -> str:
    start = md.index("## How it fails")
    end = md.find("\n## ", start + 1)
    return md[start:end if end > 0 else None]


def test_counts_and_intervals_come_from_the_summary(tmp_path: Path) -> None:
    run = _run(tmp_path)
    data = collect(run, tmp_path / "no_bench")
    text = section(render_markdown(data))
    assert "| `stuck_in_contact` |" in text and "| 13 | 0 |" in text
    assert "| 17 | 0 |" in text and "| 1 | 1 |" in text  # approached: policy 1, oracle 1
    assert "| episodes scored |  | 200 | 200 |" in text
    assert "| policy | 0.78 [0.72, 0.84] | 0.14 [0.09, 0.19] | 8.04 [5.10, 11.30] |" in text
    assert "| oracle | 0.99 [0.97, 1.00] | 0.01 [0.00, 0.03] |" in text
    assert "| policy | ahead | beside | behind | on a recovery drive |" in text
    assert "| policy | 9 | 17 | 1 | 8 |" in text and "| oracle | 0 | 2 | 0 | 0 |" in text
    # the lead-up to contact against the teacher: the labelled policy only
    assert ("| policy | drove where the teacher turns in place | turned in place where the "
            "teacher drives | another drive than the teacher's | the teacher's action every "
            "step |") in text
    assert "| policy | 11 | 2 | 6 | 8 |" in text
    keys = numbers(data)
    assert keys["eval_heldout/summary.json:policy.failure_modes.turning_in_place"] == 17
    assert keys["eval_heldout/summary.json:oracle.failure_modes.approached_timed_out"] == 1
    assert keys["eval_heldout/summary.json:policy.collision_free_success_ci95[1]"] == 0.836
    # no failure videos yet: the command that makes them, on the summary's episodes
    assert f"Run `embodied video {run} --failures 5 --seed 1` to produce it." in text


def test_missing_or_older_inputs_name_the_command(tmp_path: Path) -> None:
    old = _run(tmp_path, {"policy": {"episodes": 10, "success_rate": 0.5},
                          "policies": ["policy"], "seed": 3})
    text = section(render_markdown(collect(old, tmp_path / "no_bench")))
    assert "written before evaluation classified failures" in text
    assert "The summary predates these metrics" in text
    assert "first touched something" not in text
    assert f"Run `embodied eval {old}` to fill this table." in text
    assert f"`embodied video {old} --failures 5 --seed 3`" in text
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "train_summary.json").write_text(json.dumps({"timesteps": 10}))
    text = section(render_markdown(collect(bare, tmp_path / "no_bench")))
    assert text.strip() == f"## How it fails\n\nRun `embodied eval {bare}` to fill this table."


def test_a_strip_per_mode_from_the_failure_videos(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _index(run, VIDEOS)
    paths = write_writeup(run, tmp_path / "no_bench", tmp_path / "notes")
    md = paths["markdown"].read_text(encoding="utf-8")
    text = section(md)
    assert sorted(k for k in paths if k.startswith("failure_")) == [
        "failure_stuck_in_contact", "failure_turning_in_place"]
    for mode, episode, seed in (("turning_in_place", 4, 1000100004),
                                ("stuck_in_contact", 9, 1000100009)):
        assert f"![Failed episode: {mode}](figures/failure_{mode}.png)" in text
        assert f"Episode {episode} (reset seed {seed}" in text
        strip = iio.imread(paths[f"failure_{mode}"])
        assert strip.shape[0] == round(48 * FAILURE_FRAME_WIDTH_PX / 96)
        assert strip.shape[1] == FAILURE_STRIP_FRAMES * (FAILURE_FRAME_WIDTH_PX + 4) - 4
    assert "Episode 21" not in text  # one strip per mode: its first video
    assert "ran 57 `heldout` episodes of `checkpoint` (evaluation seed 1)" in text
    assert "found 9 failed" in text and "come from evaluation seed" not in text
    assert f"{FAILURES_INDEX}" in text
    assert f"embodied video {run} --failures 3 --episodes 200 --seed 1" in md  # reproduce


def test_strips_warn_when_the_videos_show_other_episodes(tmp_path: Path) -> None:
    run = _run(tmp_path)
    _index(run, VIDEOS[:1], seed=7)
    text = section(render_markdown(collect(run, tmp_path / "no_bench")))
    assert "These videos come from evaluation seed 7, the counts above from seed 1" in text
    assert "![Failed episode" not in text  # no figures made: render_markdown alone
    assert "did not decode" in text


def test_index_entries_that_cannot_name_a_figure_are_skipped(tmp_path: Path) -> None:
    entries = [{"failure_mode": "other", "file": "../outside.mp4"},
               {"failure_mode": "Bad Mode", "file": "x.mp4"}, "not an entry",
               {"failure_mode": "other", "file": "ok.mp4"},
               {"failure_mode": "other", "file": "second.mp4"}]
    assert failure_videos({"videos": entries}) == [(3, entries[3])]
    assert failure_videos({"videos": "nope"}) == failure_videos(None) == []
    run = _run(tmp_path)
    _index(run, [])
    text = section(render_markdown(collect(run, tmp_path / "no_bench")))
    assert "No failed episode to show among those it ran." in text


@pytest.mark.parametrize("frames", [1, 3])
def test_short_videos_give_short_strips(tmp_path: Path, frames: int) -> None:
    run = _run(tmp_path)
    _index(run, [{"episode": 0, "seed": 5, "failure_mode": "other", "file": "f.mp4",
                  "frames": frames, "steps": frames - 1}])
    paths = write_writeup(run, tmp_path / "no_bench", tmp_path / "notes")
    strip = iio.imread(paths["failure_other"])
    assert strip.shape[1] == frames * (FAILURE_FRAME_WIDTH_PX + 4) - 4
