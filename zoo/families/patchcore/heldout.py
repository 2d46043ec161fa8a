"""A second, independent defect generator: held-out evaluation for the anomaly detectors (issue 24).

    make_heldout_benchmark("gravel")    MVTec-layout folder: the texture benchmark's test quadrants and
                                        input pipeline, but six defect kinds the benchmark never plants
    heldout_sample("gravel", "crack")   one crop with one held-out defect, in memory (pictures, docs)

The texture benchmark (`zoo.families.patchcore.data.make_texture_benchmark`) plants scratches, holes, colour
spots and cut-paste patches; the published detectors were tuned on those. This module plants other
kinds, so a detector's figures here say how it does on defects nobody tuned it for. It serves only
as evaluation: nothing is fitted or chosen on it (the recipes' settings were chosen on benchmarks
generated with other seeds, see docs/models/patchcore.md). The kinds were written by looking at the
images, never at a detector's scores:

  foreign     a piece of another material (another scikit-image photo: coffee, coins, moon, ihc
              stain, or one of the other textures), re-lit to the host's mean brightness half the time,
              inside an irregular blob of radius 6-12% of the side
  stain       low-contrast contamination: a soft irregular blob that darkens by 12-28% and pulls the
              colour toward oil-brown or rust; the texture stays visible through it
  missing     material gone: an irregular region with a hard edge showing a flat, slightly noisy
              substrate (the host's mean colour, 0.45-0.7x or 1.3-1.6x as bright)
  warp        a local deformation: a swirl, bulge or pinch of the texture inside a disc of radius
              9-16% of the side (mask: the inner 80% of the disc, where the texture is visibly deformed)
  crack       a fine branching crack: a jagged random walk 1.2-2.2 px wide, dark, with 1-3 branches
  smear       a blur or smear: a directional motion blur (9-21 px) or a Gaussian blur (sigma 2.5-5)
              inside an irregular blob with a feathered edge

Every kind returns the defective image and its pixel mask (bool). The random state is seeded from
("heldout", seed, texture), never from the benchmark's stream, so no crop or defect repeats one of
the benchmark's. Test crops come from the benchmark's test quadrants (`_TEST_BOXES`), through the
same crop-and-resample pipeline, so only the defects differ.
"""

from __future__ import annotations

import math
import os
import zlib
from pathlib import Path

import numpy as np

from zoo.families.patchcore.data import (
    _TEST_BOXES,
    TEXTURES,
    _crop,
    _texture,
    check_texture,
    texture_benchmark_dir,
    write_planted,
)

HELDOUT_DEFECTS = ("foreign", "stain", "missing", "warp", "crack", "smear")
HELDOUT_VERSION = 1  # bump when a kind changes: cached folders are then rebuilt
_FOREIGN_SOURCES = ("coffee", "coins", "moon", "immunohistochemistry")


def _blob(size: int, rng: np.random.Generator, r_min: float, r_max: float) -> np.ndarray:
    """Signed distance (px, approximate) to an irregular closed blob's edge; < 0 inside.

    A circle whose radius is modulated by three random harmonics of the angle (a lumpy outline,
    not an ellipse), at a random place at least its radius away from the border.
    """
    r0 = rng.uniform(r_min, r_max) * size
    cy, cx = rng.uniform(r0 * 1.3, size - r0 * 1.3, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = np.arctan2(yy - cy, xx - cx)
    radius = np.full_like(theta, r0)
    for k in (2, 3, 5):
        radius += r0 * rng.uniform(0.05, 0.22) / math.sqrt(k) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    return np.hypot(yy - cy, xx - cx) - radius


def _foreign(img, rng, tex):
    """A piece of another material inside an irregular blob."""
    import skimage.data
    from PIL import Image

    size = img.shape[0]
    others = [t for t in TEXTURES if _texture(t) is not tex]  # cached arrays: identity names the host
    source = rng.choice([*_FOREIGN_SOURCES, *others])
    if source in TEXTURES:
        other = _texture(str(source))
    else:
        other = getattr(skimage.data, str(source))()
        other = np.repeat(other[..., None], 3, 2) if other.ndim == 2 else other[..., :3]
        other = other.astype(np.float32) / 255.0
    h, w = other.shape[:2]
    crop = int(min(h, w) * rng.uniform(0.25, 0.5))
    y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    piece = Image.fromarray((other[y:y + crop, x:x + crop] * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC)
    piece = np.asarray(piece, np.float32) / 255.0
    if rng.random() < 0.5:  # re-lit to the host's brightness: only the material differs, not the exposure
        piece = np.clip(piece * (img.mean() / max(piece.mean(), 1e-3)), 0, 1)
    sd = _blob(size, rng, 0.06, 0.12)
    alpha = np.clip(0.5 - sd / 1.2, 0, 1)[..., None]
    return img * (1 - alpha) + piece * alpha, sd < 0


def _stain(img, rng, tex):
    """A soft, low-contrast darkening with a brownish or rusty cast; the texture shows through."""
    size = img.shape[0]
    sd = _blob(size, rng, 0.08, 0.16)
    feather = rng.uniform(3.0, 7.0)
    alpha = np.clip(0.5 - sd / (2 * feather), 0, 1)
    darken = rng.uniform(0.12, 0.28)
    cast = np.array([(0.55, 0.42, 0.25), (0.6, 0.32, 0.18), (0.35, 0.35, 0.3)][int(rng.integers(3))], np.float32)
    tint = rng.uniform(0.15, 0.35)
    stained = img * (1 - darken)
    stained = stained * (1 - tint) + tint * cast * stained.mean(axis=2, keepdims=True) / cast.mean()
    a = alpha[..., None]
    return img * (1 - a) + stained * a, alpha > 0.5


def _missing(img, rng, tex):
    """Material gone: a hard-edged irregular hole down to a flat substrate."""
    size = img.shape[0]
    sd = _blob(size, rng, 0.05, 0.1)
    gain = rng.uniform(0.45, 0.7) if rng.random() < 0.6 else rng.uniform(1.3, 1.6)
    substrate = np.clip(img.reshape(-1, 3).mean(0) * gain, 0, 1)
    grain = rng.normal(0, 0.015, (size, size, 1)).astype(np.float32)
    alpha = np.clip(0.5 - sd / 0.8, 0, 1)[..., None]
    return img * (1 - alpha) + np.clip(substrate + grain, 0, 1) * alpha, sd < 0


def _warp(img, rng, tex):
    """A swirl, bulge or pinch of the texture inside a disc."""
    from scipy.ndimage import map_coordinates

    size = img.shape[0]
    r = rng.uniform(0.09, 0.16) * size
    cy, cx = rng.uniform(r * 1.2, size - r * 1.2, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    rho = np.hypot(dy, dx) / r
    fall = np.clip(1 - rho, 0, 1) ** 2  # 1 at the centre, 0 at and beyond the rim: no seam
    kind = int(rng.integers(3))
    if kind == 0:  # swirl
        angle = rng.choice([-1, 1]) * rng.uniform(1.2, 2.5) * fall
        c, s = np.cos(angle), np.sin(angle)
        sy, sx = cy + c * dy - s * dx, cx + s * dy + c * dx
    else:  # bulge (sample closer to the centre: magnifies) or pinch
        k = rng.uniform(0.4, 0.6) * (1 if kind == 1 else -1)
        scale = 1 - k * fall
        sy, sx = cy + dy * scale, cx + dx * scale
    out = np.stack([map_coordinates(img[..., ch], [sy, sx], order=1, mode="reflect") for ch in range(3)], -1)
    # the deformed disc (a swirl leaves its very centre in place, so "pixels that moved" would be a ring)
    return out, rho < 0.8


def _crack(img, rng, tex):
    """A fine, jagged, branching dark crack (a random walk, not a smooth curve)."""
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def walk(y, x, heading, steps):
        pts = [(y, x)]
        for _ in range(steps):
            heading += rng.normal(0, 0.35)
            y, x = y + 2.0 * math.sin(heading), x + 2.0 * math.cos(heading)
            if not (2 <= y < size - 2 and 2 <= x < size - 2):
                break
            pts.append((y, x))
        return pts

    start = rng.uniform(0.25, 0.75, 2) * size
    main = walk(*start, rng.uniform(0, 2 * math.pi), int(rng.integers(30, 60)))
    paths = [main]
    for _ in range(int(rng.integers(1, 4))):
        y, x = main[int(rng.integers(len(main)))]
        paths.append(walk(y, x, rng.uniform(0, 2 * math.pi), int(rng.integers(8, 25))))
    dist = np.full((size, size), np.inf, np.float32)
    for pts in paths:
        for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):  # distance to each segment
            vy, vx = y1 - y0, x1 - x0
            t = np.clip(((yy - y0) * vy + (xx - x0) * vx) / max(vy * vy + vx * vx, 1e-6), 0, 1)
            np.minimum(dist, np.hypot(yy - y0 - t * vy, xx - x0 - t * vx), out=dist)
    width = rng.uniform(1.2, 2.2)
    alpha = np.clip(width / 2 + 0.5 - dist, 0, 1)[..., None] * rng.uniform(0.75, 0.95)
    dark = img * rng.uniform(0.05, 0.25)
    return img * (1 - alpha) + dark * alpha, alpha[..., 0] > 0.35


def _smear(img, rng, tex):
    """A region blurred: a directional smear or a defocus, with a feathered edge."""
    from scipy.ndimage import convolve, gaussian_filter

    size = img.shape[0]
    if rng.random() < 0.5:
        length = int(rng.integers(9, 22))
        angle = rng.uniform(0, math.pi)
        k = np.zeros((length, length), np.float32)
        c = (length - 1) / 2
        for t in np.linspace(-c, c, 4 * length):
            k[int(round(c + t * math.sin(angle))), int(round(c + t * math.cos(angle)))] = 1
        k /= k.sum()
        blurred = np.stack([convolve(img[..., ch], k, mode="reflect") for ch in range(3)], -1)
    else:
        blurred = gaussian_filter(img, sigma=(rng.uniform(2.5, 5.0),) * 2 + (0,), mode="reflect")
    sd = _blob(size, rng, 0.08, 0.15)
    alpha = np.clip(0.5 - sd / 4.0, 0, 1)
    return img * (1 - alpha[..., None]) + blurred * alpha[..., None], alpha > 0.5


_PLANT = {"foreign": _foreign, "stain": _stain, "missing": _missing, "warp": _warp, "crack": _crack,
          "smear": _smear}


def _rng(texture: str, seed: int, *extra: int) -> np.random.Generator:
    # a stream of its own: "heldout" hashed in, so no draw coincides with the benchmark's generator
    return np.random.default_rng([zlib.crc32(b"heldout"), seed, TEXTURES.index(texture), *extra])


def make_heldout_benchmark(texture: str, root: str | os.PathLike | None = None, *, n_train: int = 20,
                           n_test: int = 15, image_size: int = 224, seed: int = 0) -> Path:
    """Write (once) an MVTec-layout folder of held-out defects on a scikit-image texture.

    test/good and test/<kind> get `n_test` crops each from the benchmark's test quadrants; train/good
    gets `n_train` crops from its training quadrants (only so the folder is a complete MVTec category:
    evaluating a fitted detector reads the test split alone). Written like the benchmark, by
    `zoo.families.patchcore.data.write_planted` (a temporary folder renamed; reused when complete).
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"held-out defects: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    check_texture(texture)
    dest = texture_benchmark_dir(texture, n_train, n_test, image_size, seed, root, f"heldout-v{HELDOUT_VERSION}")
    meta = {"texture": texture, "n_train": n_train, "n_test": n_test, "image_size": image_size, "seed": seed,
            "defects": list(HELDOUT_DEFECTS), "generator": "zoo.data.defects_heldout",
            "generator_version": HELDOUT_VERSION, "source": f"skimage.data.{texture}"}
    return write_planted(dest, texture, _PLANT, _rng(texture, seed), meta)


def heldout_sample(texture: str = "gravel", kind: str = "crack", *, image_size: int = 224,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One test-quadrant crop of `texture` with held-out defect `kind`: (image (H, W, 3) in [0, 1], mask (H, W))."""
    if kind not in _PLANT:
        raise ValueError(f"held-out defects: unknown kind {kind!r}; choose one of {', '.join(HELDOUT_DEFECTS)}")
    tex = _texture(texture)
    rng = _rng(texture, seed, 1 + HELDOUT_DEFECTS.index(kind))
    return _PLANT[kind](_crop(tex, _TEST_BOXES, image_size, rng), rng, tex)
