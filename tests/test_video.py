"""Frame composition, captions, and MP4/GIF files that decode and never appear half-written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from eval import video


def frames(n: int, height: int = 64, width: int = 96) -> Iterator[np.ndarray]:
    """``n`` distinct ``(height, width, 3)`` uint8 frames, so no encoder merges any."""
    for i in range(n):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:, (i * 7) % width] = (255, 128, 0)
        frame[..., 2] = 20 * i % 256
        yield frame


def test_compose_frame_layout_is_even_and_independent_of_text() -> None:
    camera = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    view = np.full((101, 151, 3), 90, dtype=np.uint8)
    a = video.compose_frame(camera, view, video.overlay_lines({"episode": 1, "step": 2}))
    b = video.compose_frame(camera, view, ["a much longer caption line " * 5, "x", "y", "z", "w"])
    assert a.shape == b.shape and a.dtype == np.uint8
    # 101 // 32 = 3, so the camera becomes 96 x 96 and sits left of the 151-px view.
    height, width = a.shape[:2]
    assert height % 2 == 0 and width % 2 == 0
    assert width == 96 + 151 + 1
    np.testing.assert_array_equal(a[:96, :96], np.repeat(np.repeat(camera, 3, 0), 3, 1))
    np.testing.assert_array_equal(a[:101, 96:247], view)


def test_compose_frame_panel_height() -> None:
    camera = np.zeros((16, 16, 3), dtype=np.uint8)
    view = np.zeros((64, 64, 3), dtype=np.uint8)
    assert video.compose_frame(camera, view, [], panel_height=41).shape == (106, 128, 3)
    assert video.compose_frame(camera, view, [], panel_height=0).shape == (64, 128, 3)


def test_compose_frame_rejects_non_rgb_uint8() -> None:
    view = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        video.compose_frame(np.zeros((16, 16, 3), dtype=np.float32), view, [])
    with pytest.raises(ValueError, match="alpha"):
        video.compose_frame(np.zeros((16, 16, 4), dtype=np.uint8), view, [])


def test_overlay_lines() -> None:
    info = {
        "policy": "ppo",
        "episode": 3,
        "step": 41,
        "action": np.array([0.5, -0.25]),
        "reward": 0.0123,
        "distance": 2.314,
        "success": False,
        "collided": True,
    }
    text = "\n".join(video.overlay_lines(info))
    for part in ("ppo", "episode 3", "step 41", "[+0.50, -0.25]", "+0.012", "2.31 m"):
        assert part in text
    assert "success no" in text and "collision yes" in text
    assert "action 2 " in video.overlay_lines({"action": np.int64(2)})[1]
    empty = video.overlay_lines({})
    assert len(empty) == 3 and "success -" in empty[2]


def test_mp4_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "videos" / "episode_000.mp4"
    assert video.write_mp4(frames(12), path, fps=10) == 12
    assert video.read_video_meta(path) == (12, 64, 96)
    assert [p.name for p in path.parent.iterdir()] == ["episode_000.mp4"]


def test_mp4_of_composed_frames(tmp_path: Path) -> None:
    camera = np.zeros((32, 32, 3), dtype=np.uint8)
    view = np.zeros((99, 99, 3), dtype=np.uint8)
    composed = [
        video.compose_frame(camera, view, video.overlay_lines({"step": i})) for i in range(5)
    ]
    path = tmp_path / "composed.mp4"
    assert video.write_mp4(composed, path) == 5
    assert video.read_video_meta(path) == (5, *composed[0].shape[:2])


def test_gif_is_subsampled_and_downscaled(tmp_path: Path) -> None:
    path = tmp_path / "episode.gif"
    assert video.write_gif(frames(10, 100, 400), path, fps=10, max_width=320, every=2) == 5
    assert video.read_video_meta(path) == (5, 80, 320)


def test_odd_sized_frames_are_rejected_without_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        video.write_mp4(frames(3, 63, 96), tmp_path / "odd.mp4")
    with pytest.raises(ValueError, match="no frames"):
        video.write_mp4(iter(()), tmp_path / "empty.mp4")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_failed_write_leaves_no_temp_file_and_keeps_old_video(
    tmp_path: Path, error: type[BaseException], suffix: str
) -> None:
    path = tmp_path / f"episode{suffix}"
    write = video.write_mp4 if suffix == ".mp4" else video.write_gif
    old = write(frames(4), path)

    def crashing() -> Iterator[np.ndarray]:
        yield from frames(3)
        raise error("rollout died")

    with pytest.raises(error):
        write(crashing(), path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert video.read_video_meta(path)[0] == old


# ------------------------------------------------------------------------ the chase view


def test_compose_frame_places_extra_views_right_of_the_map() -> None:
    camera = np.full((16, 16, 3), 10, dtype=np.uint8)
    view = np.full((64, 64, 3), 90, dtype=np.uint8)
    chase = np.random.default_rng(1).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    frame = video.compose_frame(camera, view, [], panel_height=0, extra_views=[chase])
    assert frame.shape == (64, 64 + 64 + 80, 3)
    np.testing.assert_array_equal(frame[:48, 128:208], chase)
    assert (frame[48:64, 128:208] == video.BACKGROUND_RGB).all()  # shorter panel: padded
    with pytest.raises(ValueError, match="extra view 0"):
        video.compose_frame(camera, view, [], extra_views=[chase.astype(np.float32)])


def _tiny_env(render: bool = True):
    from envs.config import EnvConfig, ObservationConfig
    from eval.rollout import make_eval_env

    cfg = EnvConfig(max_steps=5, split="heldout",
                    observation=ObservationConfig(width=32, height=32))
    return make_eval_env(cfg, False, render=render)


def test_chase_recorder_frames_compose_with_a_full_size_chase_panel() -> None:
    from envs.chase import CHASE, ChaseRecorder
    from eval.record import episode_frames
    from eval.rollout import OracleAgent, run_episode

    assert CHASE.height_px >= 256 and CHASE.width_px >= 256
    env = ChaseRecorder(_tiny_env())
    try:
        ep = run_episode(env, OracleAgent(False), seed=3, episode=0, keep_frames=True)
        views = list(env.views)
    finally:
        env.close()
    assert len(views) == len(ep.frames) == ep.record["steps"] + 1
    assert {v.shape for v in views} == {(CHASE.height_px, CHASE.width_px, 3)}
    assert len({v.tobytes() for v in views}) > 1  # the camera follows the robot
    frames = list(episode_frames(ep, "oracle", False, views, note="failure: test"))
    camera, topdown = ep.frames[0]
    x0 = camera.shape[1] * (CHASE.height_px // camera.shape[0]) + topdown.shape[1]
    for frame, chase in zip(frames, views):
        np.testing.assert_array_equal(frame[:CHASE.height_px, x0:x0 + CHASE.width_px], chase)
    assert frames[0].shape[1] == x0 + CHASE.width_px
    # the note (a failure video's mode) is a caption line: the panels above stay the same
    unnoted = next(episode_frames(ep, "oracle", False, views))
    assert unnoted.shape == frames[0].shape
    assert (unnoted[:CHASE.height_px] == frames[0][:CHASE.height_px]).all()
    assert (unnoted[CHASE.height_px:] != frames[0][CHASE.height_px:]).any()


def test_chase_view_draws_the_robot_the_onboard_camera_never_sees(monkeypatch) -> None:
    from envs import chase

    camera = chase.ChaseCamera(width_px=96, height_px=80)
    env = _tiny_env()
    try:
        env.reset(seed=7)
        assert not env.unwrapped.geometry.robot_visible  # hidden from the robot's own camera
        shown = chase.render_chase(env, camera)
        # the same view with the robot left as the env keeps it between renders: transparent
        monkeypatch.setattr(chase, "show_robot", lambda *args: None)
        hidden = chase.render_chase(env, camera)
        monkeypatch.undo()
        assert (chase.render_chase(env, camera) == shown).all()  # the same on every call
    finally:
        env.close()
    changed = np.argwhere(np.abs(shown.astype(int) - hidden.astype(int)).sum(axis=2) > 60)
    # the robot (and its shadow) stands centred, in the lower half of the image
    assert len(changed) > 40
    assert abs(changed[:, 1].mean() - 48) < 12 and changed[:, 0].mean() > 40


def test_chase_recorder_leaves_the_episode_unchanged() -> None:
    from envs.chase import ChaseCamera, ChaseRecorder

    plain, chased = _tiny_env(), ChaseRecorder(_tiny_env(), ChaseCamera(64, 48))
    try:
        a, _ = plain.reset(seed=11)
        b, _ = chased.reset(seed=11)
        np.testing.assert_array_equal(a, b)
        for action in (0, 1, 3, 0, 2):
            a, ra, *_ = plain.step(action)
            b, rb, *_ = chased.step(action)
            np.testing.assert_array_equal(a, b)
            assert ra == rb
    finally:
        plain.close()
        chased.close()


def test_chase_view_needs_a_drawn_robot() -> None:
    from envs.chase import render_chase

    env = _tiny_env(render=False)
    try:
        with pytest.raises(RuntimeError, match="reset"):
            render_chase(env)
        env.reset(seed=0)
        with pytest.raises(ValueError, match="render_mode='rgb_array'"):
            render_chase(env)
    finally:
        env.close()
