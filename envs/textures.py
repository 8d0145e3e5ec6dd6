"""Procedural grey-scale textures, generated in code (nothing is downloaded).

A texture is a pattern in [1 - contrast, 1]; PyBullet multiplies it with the object's colour,
so one file serves every hue. Families are split between `train` and `heldout` in
`envs.config`. Files are written once per process into a private temporary folder.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import numpy as np

import rundir

TEXTURE_VARIANTS = 3
"""Scales per family."""
CONTRAST_LEVELS = (0.25, 0.5, 0.75, 1.0)
"""Contrast is quantised to these levels so that a small, fixed set of files suffices."""
SIZE = 64

_cache_dir: str | None = None


def pattern(family: str, variant: int, size: int = SIZE) -> np.ndarray:
    """Pattern in [0, 1] (1 = full colour), shape (size, size)."""
    period = (4, 8, 16)[variant % 3]
    y, x = np.mgrid[0:size, 0:size]
    if family == "checker":
        return (((x // period) + (y // period)) % 2).astype(float)
    if family == "stripes":
        return ((x // period) % 2).astype(float)
    if family == "dots":
        cx, cy = (x % (2 * period)) - period, (y % (2 * period)) - period
        return (np.hypot(cx, cy) > 0.6 * period).astype(float)
    if family == "noise":
        rng = np.random.default_rng(1000 + variant)
        coarse = rng.uniform(size=(size // period + 1, size // period + 1))
        return np.kron(coarse, np.ones((period, period)))[:size, :size]
    raise ValueError(f"unknown texture family {family!r}; use checker, stripes, dots or noise")


def quantise_contrast(contrast: float) -> float:
    """The nearest stored contrast level."""
    return min(CONTRAST_LEVELS, key=lambda c: abs(c - contrast))


def texture_path(name: str, contrast: float) -> str:
    """Path of the PNG for texture `family_variant` at `contrast`, writing it on first use."""
    global _cache_dir
    import imageio.v3 as iio

    if _cache_dir is None:
        _cache_dir = tempfile.mkdtemp(prefix="embodied-textures-")
        atexit.register(shutil.rmtree, _cache_dir, True)
    level = quantise_contrast(contrast)
    path = os.path.join(_cache_dir, f"{name}_{int(level * 100)}.png")
    if not os.path.exists(path):
        family, variant = name.rsplit("_", 1)
        grey = 1.0 - level * (1.0 - pattern(family, int(variant)))
        img = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=2)
        # atomic: a renderer in another env never reads half a PNG
        rundir.atomic_write(path, lambda tmp: iio.imwrite(tmp, img, extension=".png"))
    return path
