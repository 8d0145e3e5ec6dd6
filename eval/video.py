"""Rollout videos: compose camera, scene views and a caption band; write MP4 and GIF atomically.

Frames are ``(H, W, 3)`` uint8 RGB throughout. A frame is composed as::

    +----------------------+-------------------+--------------------+
    | robot camera, scaled |  scene view       |  more views, left  |
    | up by an integer     |  (e.g. a top-down |  to right (e.g. a  |
    | factor (nearest)     |  render)          |  chase camera)     |
    +----------------------+-------------------+--------------------+
    | caption lines, white on dark                                  |
    +---------------------------------------------------------------+
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import imageio.v2 as imageio_v2
import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

import rundir

BACKGROUND_RGB = (24, 24, 24)
TEXT_RGB = (255, 255, 255)
FONT_SIZE_PX = 14
PANEL_LINES = 4
"""Lines the caption band holds by default; ``overlay_lines`` returns three."""
PANEL_MARGIN_PX = 6


@functools.lru_cache(maxsize=4)
def _font(size_px: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size_px``, or its fixed bitmap font without FreeType."""
    try:
        return ImageFont.load_default(size=size_px)
    except (TypeError, ImportError, OSError):
        # Pillow < 10.1 takes no size, and a Pillow built without FreeType cannot scale.
        return ImageFont.load_default()


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    """Pixel pitch between caption lines, from glyphs with both ascender and descender."""
    _, top, _, bottom = font.getbbox("Agjy|")
    return int(bottom - top) + 4


def default_panel_height(lines: int = PANEL_LINES) -> int:
    """Caption band height (px) that holds ``lines`` lines of the default font."""
    return lines * _line_height(_font(FONT_SIZE_PX)) + 2 * PANEL_MARGIN_PX


def _check_rgb(name: str, image: np.ndarray) -> None:
    """Raise unless ``image`` is ``(h, w, 3)`` uint8."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be an (h, w, 3) uint8 RGB array, got shape {image.shape} dtype "
            f"{image.dtype}; drop alpha with [..., :3] and convert floats with "
            "(x * 255).clip(0, 255).astype(np.uint8)"
        )


def _pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """``image`` padded at the bottom and right to ``(height, width)`` with the background."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    out = np.empty((height, width, 3), dtype=np.uint8)
    out[...] = BACKGROUND_RGB
    out[:h, :w] = image
    return out


def upscale_nearest(image: np.ndarray, factor: int) -> np.ndarray:
    """``(h, w, c)`` -> ``(h * factor, w * factor, c)`` by pixel repetition: no blur."""
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if factor == 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def _caption(lines: Sequence[str], width: int, height: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 band with ``lines`` drawn top-down; lines past the bottom
    are dropped so the band never grows."""
    band = Image.new("RGB", (width, height), BACKGROUND_RGB)
    draw = ImageDraw.Draw(band)
    font = _font(FONT_SIZE_PX)
    pitch = _line_height(font)
    y = PANEL_MARGIN_PX
    for text in lines:
        if y + pitch > height:
            break
        draw.text((PANEL_MARGIN_PX, y), text, fill=TEXT_RGB, font=font)
        y += pitch
    return np.asarray(band, dtype=np.uint8)


def compose_frame(
    camera: np.ndarray,
    view: np.ndarray,
    lines: Sequence[str],
    panel_height: int | None = None,
    extra_views: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """One video frame: camera (left), view, then ``extra_views``, caption band below.

    ``camera`` is the robot's ``(h, w, 3)`` uint8 image, scaled up by the largest integer
    factor that keeps it no taller than the tallest view (at least 1); ``view`` and each of
    ``extra_views`` are ``(H, W, 3)`` uint8 renders of the scene, placed left to right at
    their own size (a shorter one is padded below with the background). ``panel_height``
    (px) defaults to ``default_panel_height()``. The size depends only on the input sizes and
    ``panel_height``, never on the text, and both sides are even (libx264 with yuv420p rejects
    odd sizes), so every frame of a video matches. Returns ``(H', W', 3)`` uint8.
    """
    camera = np.asarray(camera)
    _check_rgb("camera", camera)
    views = [np.asarray(view), *(np.asarray(v) for v in extra_views)]
    for i, panel in enumerate(views):
        _check_rgb("view" if i == 0 else f"extra view {i - 1}", panel)
    factor = max(1, max(v.shape[0] for v in views) // camera.shape[0])
    cam = upscale_nearest(camera, factor)
    top_h = max(cam.shape[0], *(v.shape[0] for v in views))
    top = np.concatenate([_pad_to(panel, top_h, panel.shape[1]) for panel in [cam, *views]],
                         axis=1)
    band_h = default_panel_height() if panel_height is None else int(panel_height)
    if band_h < 0:
        raise ValueError(f"panel_height must be >= 0, got {panel_height}")
    width = top.shape[1]
    frame = np.concatenate([top, _caption(lines, width, band_h)], axis=0)
    return _pad_to(frame, frame.shape[0] + frame.shape[0] % 2, width + width % 2)


def _format_action(action: Any) -> str:
    """A discrete action as an int, a continuous one as ``[0.50, -0.20]``."""
    arr = np.asarray(action)
    if arr.ndim == 0:
        value = arr.item()
        return str(value) if isinstance(value, int | np.integer) else f"{float(value):+.2f}"
    return "[" + ", ".join(f"{float(v):+.2f}" for v in arr.ravel()) + "]"


def _flag(value: Any) -> str:
    """``yes``/``no`` for a bool-like value, ``-`` when unknown."""
    return "-" if value is None else ("yes" if bool(value) else "no")


def overlay_lines(step_info: Mapping[str, Any]) -> list[str]:
    """Caption for one step: always three lines, so the band layout stays still.

    Reads ``policy``, ``episode``, ``step``, ``action``, ``reward``, ``distance`` (m, to the
    goal), ``success`` and ``collided``; a missing or None value shows as ``-``.
    """

    def get(key: str, fmt: Callable[[Any], str]) -> str:
        value = step_info.get(key)
        return "-" if value is None else fmt(value)

    return [
        f"{get('policy', str)}  episode {get('episode', str)}  step {get('step', str)}",
        f"action {get('action', _format_action)}  reward {get('reward', lambda r: f'{r:+.3f}')}",
        f"goal {get('distance', lambda d: f'{d:.2f} m')}  "
        f"success {_flag(step_info.get('success'))}  "
        f"collision {_flag(step_info.get('collided'))}",
    ]


def _atomic_write(path: str | os.PathLike[str], write: Callable[[Path], int]) -> int:
    """Write through `rundir.atomic_write` and return what ``write(tmp)`` counted.

    A reader never sees a half-written video, and on any exception (KeyboardInterrupt too)
    the temporary file is removed. The temporary name keeps the suffix because the encoders
    choose the container from it.
    """
    counted: list[int] = []
    rundir.atomic_write(path, lambda tmp: counted.append(write(tmp)))
    return counted[0]


def _checked_frames(frames: Iterable[np.ndarray], *, even: bool) -> Iterator[np.ndarray]:
    """Yield ``frames`` as uint8 RGB arrays, all the size of the first; raise on any other."""
    first: tuple[int, ...] | None = None
    for i, frame in enumerate(frames):
        arr = np.asarray(frame)
        _check_rgb(f"frame {i}", arr)
        if first is None:
            first = arr.shape
            if even and (arr.shape[0] % 2 or arr.shape[1] % 2):
                raise ValueError(
                    f"H.264 needs even frame sizes, got {arr.shape[:2]}; build frames with "
                    "compose_frame, which pads them"
                )
        elif arr.shape != first:
            raise ValueError(f"frame {i} has shape {arr.shape}, frame 0 had {first}")
        yield arr
    if first is None:
        raise ValueError("no frames to write; the rollout produced nothing to record")


def write_mp4(frames: Iterable[np.ndarray], path: str | os.PathLike[str], fps: int = 10) -> int:
    """Encode ``(H, W, 3)`` uint8 frames (even H and W) as H.264 MP4 at ``fps``.

    libx264 with yuv420p plays in browsers and GitHub; ``macro_block_size=1`` keeps imageio
    from rescaling to multiples of 16. The file is written atomically; returns the frame count.
    """

    def write(tmp: Path) -> int:
        writer = imageio_v2.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
            # The index goes first so a browser can start playing before the download ends.
            output_params=["-movflags", "+faststart"],
        )
        count = 0
        try:
            for frame in _checked_frames(frames, even=True):
                writer.append_data(frame)
                count += 1
        except BaseException:
            # ffmpeg may already be gone (Ctrl-C reaches it too); the first error is the news.
            with contextlib.suppress(Exception):
                writer.close()
            raise
        writer.close()
        return count

    return _atomic_write(path, write)


def _downscale(frame: np.ndarray, max_width: int) -> Image.Image:
    """``frame`` as a Pillow image no wider than ``max_width``, aspect ratio kept."""
    image = Image.fromarray(frame)
    if image.width <= max_width:
        return image
    height = max(1, round(image.height * max_width / image.width))
    return image.resize((max_width, height), Image.Resampling.LANCZOS)


def write_gif(
    frames: Iterable[np.ndarray],
    path: str | os.PathLike[str],
    fps: int = 10,
    max_width: int = 320,
    every: int = 2,
) -> int:
    """A small looping GIF for READMEs: every ``every``-th frame, at most ``max_width`` px wide.

    ``fps`` is the rate of the input frames; each kept frame is shown for ``every / fps`` s so
    playback stays real time (GIF delays are whole centiseconds). Frames are held in memory
    after downscaling (~``max_width**2`` bytes each). Written atomically. Returns the number of
    frames handed to the encoder; Pillow merges runs of identical frames into one longer frame,
    so a decoder may count fewer.
    """
    if every < 1 or max_width < 1 or fps <= 0:
        raise ValueError(
            f"need every >= 1, max_width >= 1 and fps > 0; got {every}, {max_width}, {fps}"
        )
    duration_ms = max(10, 10 * round(100 * every / fps))

    def write(tmp: Path) -> int:
        images = [
            _downscale(frame, max_width)
            for i, frame in enumerate(_checked_frames(frames, even=False))
            if i % every == 0
        ]
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=duration_ms,
            loop=0,
        )
        return len(images)

    return _atomic_write(path, write)


def read_video_meta(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(frame_count, height, width)`` of an MP4 or GIF, found by decoding every frame."""
    count, height, width = 0, 0, 0
    for frame in iio.imiter(path):
        count += 1
        height, width = frame.shape[:2]
    if count == 0:
        raise ValueError(f"{path} decoded to no frames")
    return count, height, width
