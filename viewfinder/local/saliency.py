"""The smart-crop region of interest without a model endpoint: spectral residual saliency.

Hou & Zhang, "Saliency Detection: A Spectral Residual Approach" (CVPR 2007): on a
small grey copy of the image, the log amplitude spectrum minus its local average (the
"spectral residual") keeps what is unexpected in the image; transformed back with the
original phase, squared and blurred, it gives a saliency map. Cells above the map's
mean keep their saliency; the region of interest is the mass-weighted box that holds
the central part of that saliency along each axis, and `viewfinder.finish.crops.smart_crops`
turns it into crops exactly as it does the model's region of interest.

Only NumPy is needed. The region is coarse (one cell of the working copy is 1/64 of
the image's long side) and knows nothing of what things are: it favours contrast,
edges and isolated objects, not faces or text as such.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from viewfinder.finish.crops import smart_crops
from viewfinder.schemas.features import CropRegion
from viewfinder.schemas.geometry import BoundingBox

__all__ = [
    "DEFAULT_SETTINGS",
    "SaliencySettings",
    "local_smart_crops",
    "saliency_map",
    "salient_region",
    "settings_text",
    "spectral_residual",
]

Grid = NDArray[np.float64]


@dataclass(frozen=True)
class SaliencySettings:
    """Everything that decides the region of interest (part of `model_version`).

    Attributes:
        size: Long side, in pixels, of the grey working copy (Hou & Zhang use 64).
        min_side: Short side, in pixels, of the working copy at least (very long
            images are squeezed rather than reduced to a line).
        blur_sigma: Standard deviation, in working pixels, of the Gaussian blur of the
            saliency map.
        threshold: A cell counts when its saliency exceeds this many times the map's
            mean; the others count for nothing.
        trim: Fraction of the counted saliency mass left out of the region on each
            side, along each axis (0.1: the region holds the central 80 %).
    """

    size: int = 64
    min_side: int = 8
    blur_sigma: float = 2.5
    threshold: float = 1.0
    trim: float = 0.1


DEFAULT_SETTINGS = SaliencySettings()
"""The settings `salient_region` uses unless told otherwise."""


def settings_text(settings: SaliencySettings = DEFAULT_SETTINGS) -> str:
    """A canonical text of `settings` and NumPy's version, for `model_version`.

    Args:
        settings: The saliency settings.

    Returns:
        Text that changes whenever the region of interest may change.
    """
    return f"saliency:numpy={np.__version__}:{sorted(asdict(settings).items())!r}"


def _box_filter3(grid: Grid) -> Grid:
    """3x3 mean with wrap-around: the spectrum is periodic."""
    total = np.zeros_like(grid)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            total += np.roll(grid, (dy, dx), axis=(0, 1))
    return total / 9.0


def _gaussian_blur(grid: Grid, sigma: float) -> Grid:
    """Separable Gaussian blur with mirrored edges."""
    if sigma <= 0:
        return grid
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    result = grid
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(result, pad, mode="symmetric")
        windows = np.lib.stride_tricks.sliding_window_view(padded, kernel.size, axis=axis)
        result = windows @ kernel
    return result


def spectral_residual(grey: Grid) -> Grid:
    """The raw spectral residual saliency of a small grey image (before blurring).

    Args:
        grey: The image, values in any range, at most a few thousand cells.

    Returns:
        Saliency, same shape, non-negative.
    """
    spectrum = np.fft.fft2(grey)
    log_amplitude = np.log(np.abs(spectrum) + 1e-9)
    residual = log_amplitude - _box_filter3(log_amplitude)
    back = np.fft.ifft2(np.exp(residual + 1j * np.angle(spectrum)))
    saliency: Grid = np.abs(back) ** 2
    return saliency


def _working_size(width: int, height: int, settings: SaliencySettings) -> tuple[int, int]:
    scale = settings.size / max(width, height)
    return (
        max(settings.min_side, min(width, round(width * scale))),
        max(settings.min_side, min(height, round(height * scale))),
    )


def saliency_map(image: Image.Image, settings: SaliencySettings = DEFAULT_SETTINGS) -> Grid:
    """The blurred saliency map of `image` on its small working copy.

    Args:
        image: The image, any mode.
        settings: Saliency settings.

    Returns:
        A (rows, columns) map, about `settings.size` on its long side, scaled to a
        maximum of 1 (all zeros for a flat image).
    """
    size = _working_size(image.width, image.height, settings)
    grey = np.asarray(image.convert("L").resize(size, Image.Resampling.BOX), dtype=np.float64)
    saliency = _gaussian_blur(spectral_residual(grey / 255.0), settings.blur_sigma)
    peak = float(saliency.max())
    if not np.isfinite(peak) or peak <= 1e-12 or float(grey.std()) < 1e-3:
        return np.zeros_like(saliency)
    scaled: Grid = saliency / peak
    return scaled


def _span(mass: Grid, trim: float) -> tuple[int, int]:
    """First and one-past-last index holding the central `1 - 2 * trim` of `mass`."""
    cumulative = np.cumsum(mass) / float(mass.sum())
    first = int(np.searchsorted(cumulative, trim, side="right"))
    last = int(np.searchsorted(cumulative, 1.0 - trim, side="left"))
    last = min(max(last, first), mass.size - 1)
    return first, last + 1


def salient_region(
    image: Image.Image, settings: SaliencySettings = DEFAULT_SETTINGS
) -> BoundingBox:
    """The region of interest of `image`: where most of its saliency is.

    Cells of the saliency map above `settings.threshold` times its mean keep their
    saliency, the others count for nothing; along each axis, the region spans the
    central part of that mass, `settings.trim` of it cut off on either side. A flat
    image, or one with no salient cell, gives the whole image.

    Args:
        image: The image, as a viewer shows it (EXIF orientation applied), any mode.
        settings: Saliency settings.

    Returns:
        The region, in pixels of `image`, inside it.
    """
    width, height = image.size
    whole = BoundingBox(x=0, y=0, width=width, height=height)
    saliency = saliency_map(image, settings)
    mean = float(saliency.mean())
    if mean <= 0:
        return whole
    kept = np.where(saliency > settings.threshold * mean, saliency, 0.0)
    if float(kept.sum()) <= 0:
        return whole
    grid_rows, grid_cols = kept.shape
    col0, col1 = _span(kept.sum(axis=0), settings.trim)
    row0, row1 = _span(kept.sum(axis=1), settings.trim)
    sx, sy = width / grid_cols, height / grid_rows
    x0, x1 = math.floor(col0 * sx), min(width, math.ceil(col1 * sx))
    y0, y1 = math.floor(row0 * sy), min(height, math.ceil(row1 * sy))
    return BoundingBox(x=x0, y=y0, width=max(1, x1 - x0), height=max(1, y1 - y0))


def local_smart_crops(
    image: Image.Image,
    ratios: Sequence[float] = (),
    settings: SaliencySettings = DEFAULT_SETTINGS,
) -> list[CropRegion]:
    """Smart crops around the salient region, with the model path's crop geometry.

    Args:
        image: The image, as a viewer shows it (EXIF orientation applied).
        ratios: Validated aspect ratios (0.75-1.8); none gives one crop (see
            `viewfinder.finish.crops.smart_crops`).
        settings: Saliency settings.

    Returns:
        One crop per ratio, in order, in pixels of `image`.
    """
    roi = salient_region(image, settings)
    return smart_crops(roi, image.width, image.height, ratios)
