"""Camera imperfections applied to the rendered frame (tone, optional blur, Gaussian noise),
and the marks drawn on the top-down video view.

Per episode the drawn values are turned into lookup tables, so that a frame costs a handful
of whole-array numpy operations: at 64x64 each numpy call costs about as much as the
arithmetic it does, so the design counts calls. numpy is slow at two things used naively here,
copying a strided 3-wide channel slice (element by element) and gathering with non-`intp`
indices or bounds checking; both are avoided.
"""

from __future__ import annotations

import math

import numpy as np

NOISE_MARGIN = 32
"""The per-episode noise field is this many pixels larger than the frame each way; each frame
takes a random crop of it (drawing H*W*3 normals per frame would cost more than the render)."""


class ImageNoise:
    """One episode's tone curve and noise field.

    `contrast` and `brightness` map v -> clip(round((v - 128) * contrast + 128 + brightness));
    a frame is blurred (3x3 box mean) with the episode's `blur_probability`, then gets the
    noise field's crop added and is clipped to [0, 255].
    """

    def __init__(self, rng: np.random.Generator, height: int, width: int, contrast: float,
                 brightness: float, noise_std: float):
        levels = np.arange(256, dtype=np.float32)
        tone = (levels - 128.0) * contrast + 128.0 + brightness
        self.tone = np.clip(np.round(tone), 0, 255).astype(np.uint8)
        self.index = None
        self.dtype: type = np.int16
        if noise_std > 0:
            field = np.round(rng.standard_normal(
                (height + NOISE_MARGIN, width + NOISE_MARGIN, 3)) * noise_std)
            k = int(np.abs(field).max())
            # one gather does tone, noise and both clips: table[(n + k) * 256 + v]
            shifts = np.arange(-k, k + 1, dtype=np.int32)[:, None]
            self.noisy_tone = np.clip(self.tone[None, :] + shifts, 0, 255).astype(
                np.uint8).ravel()
            self.noisy = np.clip(np.arange(256)[None, :] + shifts, 0, 255).astype(
                np.uint8).ravel()  # noise alone, after a blur
            # int16 indices when they fit: same-type adds run vectorised, mixed ones do not
            self.dtype = np.int16 if self.noisy.size <= 2**15 else np.int32
            self.index = ((field + k) * 256).astype(self.dtype)

    def apply(self, rgba: np.ndarray, blur: bool, crop_y: float, crop_x: float) -> np.ndarray:
        """A fresh HxWx3 uint8 frame from the renderer's HxWx4 one; `crop_y`, `crop_x` in
        [0, 1) place the noise crop."""
        h, w = rgba.shape[:2]
        rgb = drop_alpha(rgba, self.dtype)
        if self.index is None:
            img = lookup(self.tone, rgb)
            return box_blur(img) if blur else img
        span = NOISE_MARGIN + 1
        oy, ox = int(crop_y * span), int(crop_x * span)
        index = self.index[oy:oy + h, ox:ox + w]
        if blur:
            return lookup(self.noisy, index + box_blur(lookup(self.tone, rgb)).astype(self.dtype))
        return lookup(self.noisy_tone, index + rgb)


def drop_alpha(rgba: np.ndarray, dtype: type = np.uint8) -> np.ndarray:
    """HxWx4 -> a contiguous HxWx3 copy in `dtype`, as three one-channel copies (numpy copies
    a strided 3-wide slice element by element, about four times slower)."""
    h, w = rgba.shape[:2]
    out = np.empty((h, w, 3), dtype)
    dst, src = out.reshape(-1, 3), rgba.reshape(-1, 4)
    dst[:, 0], dst[:, 1], dst[:, 2] = src[:, 0], src[:, 1], src[:, 2]
    return out


def lookup(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """table[index] for in-range integer indices. numpy gathers fastest with intp indices and
    no bounds checking ('wrap' only wraps out-of-range ones, which cannot occur here)."""
    return np.take(table, index.astype(np.intp), mode="wrap")


def box_blur(img: np.ndarray) -> np.ndarray:
    """3x3 box mean (floor) with edge replication: two 3-tap passes over rows of H x 3W (so
    every shift is a contiguous slice), and floor(s / 9) as (s * 3641) >> 15, exact for the
    sums of nine bytes (integer division has no vector instruction)."""
    h, w, c = img.shape
    a = img.reshape(h, w * c).astype(np.uint32)
    rows = a.copy()
    rows[:, c:] += a[:, :-c]
    rows[:, :-c] += a[:, c:]
    rows[:, :c] += a[:, :c]
    rows[:, -c:] += a[:, -c:]
    out = rows.copy()
    out[1:] += rows[:-1]
    out[:-1] += rows[1:]
    out[0] += rows[0]
    out[-1] += rows[-1]
    out *= 3641
    out >>= 15
    return out.astype(np.uint8).reshape(h, w, c)


def draw_topdown_marks(img: np.ndarray, view, proj, goal_xy, goal_radius_px: float,
                       trajectory) -> None:
    """Draw the success circle around the goal and the driven path (x, y points) onto the
    top-down image rendered with `view` and `proj` (PyBullet's column-major matrices)."""
    size = img.shape[0]
    to_clip = np.asarray(proj).reshape(4, 4, order="F") @ np.asarray(view).reshape(
        4, 4, order="F")

    def to_px(xy: np.ndarray) -> np.ndarray:
        pts = np.c_[xy, np.zeros(len(xy)), np.ones(len(xy))] @ to_clip.T
        ndc = pts[:, :2] / pts[:, 3:4]
        return np.stack([(ndc[:, 0] + 1) / 2 * size, (1 - ndc[:, 1]) / 2 * size], axis=1)

    _draw_circle(img, to_px(np.asarray([goal_xy], dtype=float))[0], goal_radius_px,
                 (255, 60, 60))
    _draw_polyline(img, to_px(np.asarray(trajectory, dtype=float)), (255, 200, 0))


def _draw_polyline(img: np.ndarray, pts: np.ndarray, colour) -> None:
    for a, b in zip(pts[:-1], pts[1:]):
        n = int(max(abs(b - a).max(), 1)) * 2
        for t in np.linspace(0, 1, n):
            x, y = (a + (b - a) * t).astype(int)
            img[max(y - 1, 0):y + 1, max(x - 1, 0):x + 1] = colour


def _draw_circle(img: np.ndarray, centre: np.ndarray, radius_px: float, colour) -> None:
    for t in np.linspace(0, 2 * math.pi, 90):
        x = int(centre[0] + radius_px * math.cos(t))
        y = int(centre[1] + radius_px * math.sin(t))
        if 0 <= x < img.shape[1] and 0 <= y < img.shape[0]:
            img[y, x] = colour
