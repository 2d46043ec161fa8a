"""Anomaly-detection data: the MVTec AD folder layout, an offline texture benchmark, Fashion-MNIST one-class.

    read_mvtec(root)                          MVTec AD category folder -> (train, test) AnomalySets
    make_texture_benchmark("brick")           planted-defect crops of a real scikit-image texture,
                                              written once in the MVTec layout (cached), then read_mvtec
    read_fashion_mnist_oneclass(0)            one Fashion-MNIST class normal, the other nine anomalous

The MVTec AD layout (also the format for your own data):

    ROOT/train/good/*.png                     normal images only (the memory bank is built from these)
    ROOT/test/good/*.png                      normal test images (test/ is optional: see below)
    ROOT/test/<defect>/*.png                  anomalous test images, one folder per defect type
    ROOT/ground_truth/<defect>/<stem>_mask.png  pixel masks (non-zero = defect), same size as the image

A folder of normal images alone also works (anomalib's Folder style): ROOT/*.png, or ROOT/train/good
without ROOT/test. Then there is no test split; the detector is fitted and its thresholds chosen on
held-out normals. Images may be PNG, JPEG, BMP or TIFF, grey or colour (grey is repeated to three channels). Every
file is checked (headers only) before anything is decoded: a missing mask, a mask whose size differs
from its image or an unreadable file raise a ValueError naming the file.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.data import images
from zoo.data.images import FASHION_MNIST_LABELS
from zoo.utils import cache_dir

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
TEXTURES = ("brick", "grass", "gravel")
DEFECTS = ("scratch", "hole", "color_spot", "cut_paste")
FASHION_LABELS = tuple(c.lower() for c in FASHION_MNIST_LABELS)
GENERATOR_VERSION = 1  # bump when the texture generator changes: cached benchmarks are then rebuilt


@dataclass
class AnomalySet:
    """Images with image labels and (optional) pixel masks, held in memory as uint8.

    Attributes:
        images: (N, 3, H, W) uint8.
        labels: (N,) int64, 0 = normal, 1 = anomalous.
        masks: (N, H, W) uint8 in {0, 1}, or None for image-level data (Fashion-MNIST).
        kinds: defect type of each image ("good" for normal ones).
        names: a name per image (file path relative to the data root, or "split/index").

    `get_batch(idx)` returns {"image": float (b, 3, H, W) in [0, 1], "label": (b,), "mask": (b, H, W)}
    (no "mask" for image-level data), the vectorised form the engine's loaders use.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    kinds: list[str]
    names: list[str]

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, idx) -> dict:
        batch = {"image": self.images[idx].float() / 255.0, "label": self.labels[idx]}
        if self.masks is not None:
            batch["mask"] = self.masks[idx]
        return batch

    def subset(self, idx) -> AnomalySet:
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = idx.tolist()
        return AnomalySet(self.images[idx], self.labels[idx], None if self.masks is None else self.masks[idx],
                          [self.kinds[i] for i in pick], [self.names[i] for i in pick])


# --------------------------------------------------------------------------- MVTec AD layout


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _header_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size  # (W, H), read from the header without decoding the pixels
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def scan_mvtec(root: str | os.PathLike) -> dict:
    """Check an MVTec AD category folder and list its files; nothing is decoded yet.

    Returns {"train": [paths], "test": [(path, kind, mask_path or None)]} ("test" empty when the folder
    has no test/ split, or holds normal images only). Raises ValueError naming the folder or file when
    the layout is wrong, a mask is missing or a mask's size differs from its image's.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"MVTec data: {root} is not a directory (expected ROOT/train/good, ROOT/test/<defect>, "
                         "ROOT/ground_truth/<defect>/*_mask.png, or a folder of normal images)")
    train_dir = root / "train" / "good"
    if not train_dir.is_dir():
        if image_files(root):  # a plain folder of normal images
            train_dir = root
        else:
            raise ValueError(f"MVTec data: {train_dir} is missing and {root} holds no images: normal training "
                             f"images go in ROOT/train/good/ (or directly in ROOT)")
    train = image_files(train_dir)
    if not train:
        raise ValueError(f"MVTec data: {train_dir} holds no images ({', '.join(IMAGE_EXTS)})")
    test_dir = root / "test"
    test = []
    for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []:
        kind = folder.name
        for img in image_files(folder):
            mask = None
            if kind != "good":
                mask = root / "ground_truth" / kind / f"{img.stem}_mask.png"
                if not mask.is_file():
                    raise ValueError(f"MVTec data: {img} has no mask: expected {mask} "
                                     "(a PNG, non-zero where the defect is, same size as the image)")
            test.append((img, kind, mask))
    if test_dir.is_dir() and not test:
        raise ValueError(f"MVTec data: {test_dir} holds no images in test/good/ or test/<defect>/")
    sizes = {}
    for path in train + [t[0] for t in test]:
        sizes[path] = _header_size(path)
    for img, _, mask in test:
        if mask is not None and _header_size(mask) != sizes[img]:
            (w, h), (mw, mh) = sizes[img], _header_size(mask)
            raise ValueError(f"MVTec data: mask {mask} is {mw}x{mh} but its image {img} is {w}x{h}")
    return {"train": train, "test": test, "sizes": sizes}


def _load_image(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)  # PIL's bilinear filter antialiases when shrinking
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def _load_mask(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.NEAREST)
        return (np.asarray(im) > 0).astype(np.uint8)


def _evenly(items: list, n: int | None) -> list:
    """At most n items spread over the list (deterministic): caps that keep every part of a folder."""
    if n is None or n >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def read_mvtec(root: str | os.PathLike, image_size: int | None = 224, n_train: int | None = None,
               n_test: int | None = None) -> tuple[AnomalySet, AnomalySet]:
    """Read an MVTec AD category folder (validated first, see `scan_mvtec`).

    Args:
        root: the category folder (holding train/, test/, ground_truth/).
        image_size: images are resized to image_size x image_size (masks with nearest neighbour);
            None keeps the files' size, which must then be the same for every image.
        n_train: at most this many training images (spread over the folder); None = all.
        n_test: at most this many test images per test folder (good and each defect); None = all.

    Returns:
        (train, test): train holds only normal images (masks of zeros), test normal and anomalous ones
        (None when the folder has no test split).
    """
    root = Path(root).expanduser()
    found = scan_mvtec(root)
    if image_size is None and len(set(found["sizes"].values())) > 1:
        raise ValueError(f"MVTec data: {root} has images of sizes {sorted(set(found['sizes'].values()))}; "
                         "set data.image_size to resize them to one size")
    train_files = _evenly(found["train"], n_train)
    by_kind: dict[str, list] = {}
    for item in found["test"]:
        by_kind.setdefault(item[1], []).append(item)
    test_items = [it for kind in sorted(by_kind) for it in _evenly(by_kind[kind], n_test)]

    def build(items) -> AnomalySet:
        images = np.stack([_load_image(p, image_size) for p, _, _ in items])
        h, w = images.shape[2:]
        masks = np.stack([_load_mask(m, image_size) if m is not None else np.zeros((h, w), np.uint8)
                          for _, _, m in items])
        labels = [0 if kind == "good" else 1 for _, kind, _ in items]
        return AnomalySet(torch.from_numpy(images), torch.tensor(labels), torch.from_numpy(masks),
                          [kind for _, kind, _ in items], [str(p.relative_to(root)) for p, _, _ in items])

    return build([(p, "good", None) for p in train_files]), build(test_items) if test_items else None


# --------------------------------------------------------------------------- texture benchmark

# A tint per texture turns the grey scikit-image photos into plausible colour images, so that
# colour spots are a change of hue and not just of brightness.
_TINTS = {"brick": (1.18, 0.86, 0.74), "grass": (0.86, 1.12, 0.78), "gravel": (1.05, 1.0, 0.92)}
_CROP = 200  # source pixels per crop side; crops are resampled to image_size
# Boxes (y0, y1, x0, x1) of the 512x512 photo: train crops from the top-left and bottom-right
# quadrants, test crops from the other two, 16 pixels apart, so no test pixel is seen in training
# and both sets sample every part of the photo's lighting.
_TRAIN_BOXES = ((0, 248, 0, 248), (264, 512, 264, 512))
_TEST_BOXES = ((0, 248, 264, 512), (264, 512, 0, 248))
_WHOLE = ((0, 512, 0, 512),)


def check_texture(name: str) -> str:
    if name not in TEXTURES:
        raise ValueError(f"texture benchmark: unknown texture {name!r}; choose one of {', '.join(TEXTURES)}")
    return name


@functools.cache
def _texture(name: str) -> np.ndarray:
    from zoo.deps import require

    skimage_data = require("skimage.data", "anomaly")
    grey = getattr(skimage_data, check_texture(name))().astype(np.float32) / 255.0
    tex = np.clip(grey[..., None] * np.array(_TINTS[name], np.float32), 0.0, 1.0)
    tex.setflags(write=False)  # cached and shared: read only
    return tex


def _crop(tex: np.ndarray, boxes, size: int, rng: np.random.Generator, crop: int = _CROP) -> np.ndarray:
    from PIL import Image

    y0, y1, x0, x1 = boxes[int(rng.integers(len(boxes)))]
    y = int(rng.integers(y0, y1 - crop + 1))
    x = int(rng.integers(x0, x1 - crop + 1))
    patch = Image.fromarray((tex[y:y + crop, x:x + crop] * 255).round().astype(np.uint8))
    return np.asarray(patch.resize((size, size), Image.BICUBIC), np.float32) / 255.0


def _ellipse(size: int, cy: float, cx: float, ry: float, rx: float, angle: float) -> np.ndarray:
    """Signed 'distance' (in pixels, approximately) to a rotated ellipse's edge; < 0 inside."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u, v = (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c
    r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2)
    return (r - 1.0) * min(rx, ry)


def _scratch(img, rng, tex):
    """A thin curved line (quadratic Bezier), bright or dark, antialiased."""
    size = img.shape[0]
    length = rng.uniform(0.3, 0.7) * size
    angle = rng.uniform(0, math.pi)
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    d = np.array([math.sin(angle), math.cos(angle)]) * length / 2
    p0, p2 = np.array([cy, cx]) - d, np.array([cy, cx]) + d
    p1 = (p0 + p2) / 2 + rng.normal(0, length / 5, 2)
    t = np.linspace(0, 1, 200)[:, None]
    pts = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = np.full((size, size), np.inf, np.float32)
    for py, px in pts:
        np.minimum(dist, np.hypot(yy - py, xx - px), out=dist)
    width = rng.uniform(2.5, 5.0)
    alpha = np.clip(width / 2 + 0.5 - dist, 0, 1)[..., None]
    colour = rng.uniform(0.85, 1.0) if rng.random() < 0.5 else rng.uniform(0.0, 0.12)
    return img * (1 - alpha) + colour * alpha, alpha[..., 0] > 0.5


def _hole(img, rng, tex):
    """A dark elliptic hole with a soft rim."""
    size = img.shape[0]
    ry, rx = rng.uniform(0.05, 0.1, 2) * size
    sd = _ellipse(size, *rng.uniform(0.2, 0.8, 2) * size, ry, rx, rng.uniform(0, math.pi))
    alpha = np.clip(0.5 - sd / 1.5, 0, 1)[..., None]
    depth = rng.uniform(0.02, 0.12)
    return img * (1 - alpha) + depth * alpha, sd < 0


def _color_spot(img, rng, tex):
    """A translucent stain of a saturated colour at least a quarter turn of hue away from the material's."""
    import colorsys

    size = img.shape[0]
    ry, rx = rng.uniform(0.06, 0.12, 2) * size
    sd = _ellipse(size, *rng.uniform(0.2, 0.8, 2) * size, ry, rx, rng.uniform(0, math.pi))
    strength = rng.uniform(0.55, 0.85)
    alpha = (np.clip(0.5 - sd / 3.0, 0, 1) * strength)[..., None]
    hue = colorsys.rgb_to_hsv(*tex.mean(axis=(0, 1)))[0] + rng.uniform(0.25, 0.75)
    colour = np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(0.7, 1.0), rng.uniform(0.6, 1.0)))
    luminance = img.mean(axis=2, keepdims=True)
    stained = np.clip(colour * (0.5 + luminance), 0, 1)  # keeps the texture's shading under the stain
    return img * (1 - alpha) + stained * alpha, sd < 0


def _cut_paste(img, rng, tex):
    """A patch of the same material at twice the scale, turned 90 degrees and re-lit, pasted in (CutPaste)."""
    size = img.shape[0]
    h, w = (rng.uniform(0.15, 0.3, 2) * size).astype(int)
    src = _crop(tex, _WHOLE, size, rng, crop=_CROP // 2)
    y0, x0 = rng.integers(0, size - max(h, w), 2)
    patch = np.rot90(src[y0:y0 + w, x0:x0 + h], k=int(rng.choice([1, 3])))
    gain = rng.uniform(0.6, 0.78) if rng.random() < 0.5 else rng.uniform(1.25, 1.45)
    y, x = (rng.uniform(0.15, 0.85, 2) * size).astype(int)
    y, x = min(y, size - h), min(x, size - w)
    out, mask = img.copy(), np.zeros((size, size), bool)
    out[y:y + h, x:x + w] = np.clip(patch * gain, 0, 1)
    mask[y:y + h, x:x + w] = True
    return out, mask


_PLANT = {"scratch": _scratch, "hole": _hole, "color_spot": _color_spot, "cut_paste": _cut_paste}


def texture_benchmark_dir(texture: str, n_train: int, n_test: int, image_size: int, seed: int,
                          root: str | os.PathLike | None = None, generator: str = f"v{GENERATOR_VERSION}") -> Path:
    """Where `make_texture_benchmark` (or another `generator`) writes a benchmark with these settings."""
    base = Path(root).expanduser() if root is not None else cache_dir("anomaly_textures")
    return base / f"{texture}-{generator}-s{seed}-train{n_train}-test{n_test}-{image_size}px"


def make_texture_benchmark(texture: str, root: str | os.PathLike | None = None, *, n_train: int = 100,
                           n_test: int = 15, image_size: int = 224, seed: int = 0) -> Path:
    """Write (once) an MVTec-layout benchmark of planted defects on a real scikit-image texture.

    The 512x512 grey photo is tinted (brick reddish, grass green, gravel beige). Normal training
    crops come from its top-left and bottom-right quadrants, test crops from the other two (16
    pixels apart), so no test pixel was seen in training. Each test folder gets `n_test` crops:
    good, scratch, hole, color_spot and cut_paste, each defect with its pixel mask:

      scratch     a curved line 2.5-5 px wide, 30-70% of the side long, near-white or near-black
      hole        a dark ellipse, radii 5-10% of the side, soft rim
      color_spot  a translucent stain (alpha 0.55-0.85), radii 6-12%, hue >= 90 degrees from the material's
      cut_paste   a 15-30% patch of the same photo at twice the scale, turned 90 degrees, 0.6-0.78x or
                  1.25-1.45x as bright

    Crops of 200 source pixels are resampled (bicubic) to `image_size`. A fixed seed makes the files
    identical on every machine.

    Args:
        texture: "brick" | "grass" | "gravel".
        root: parent folder of the benchmark folder (default: ~/.cache/zoo/anomaly_textures, `zoo.utils.cache_dir`).

    Returns:
        The category folder (read it with `read_mvtec`). An existing complete folder is reused; a new
        one is written to a temporary folder and renamed, so concurrent runs never see half of one.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"texture benchmark: n_train and n_test must be >= 1, got {n_train}, {n_test}")
    check_texture(texture)
    dest = texture_benchmark_dir(texture, n_train, n_test, image_size, seed, root)
    meta = {"texture": texture, "n_train": n_train, "n_test": n_test, "image_size": image_size, "seed": seed,
            "defects": list(DEFECTS), "generator_version": GENERATOR_VERSION, "source": f"skimage.data.{texture}"}
    return write_planted(dest, texture, _PLANT, np.random.default_rng([seed, TEXTURES.index(texture)]), meta)


def write_planted(dest: Path, texture: str, plant: dict, rng: np.random.Generator, meta: dict) -> Path:
    """Write (once) an MVTec-layout folder of defects planted on crops of `texture`.

    `meta["n_train"]` normal crops from the training quadrants go to train/good, `meta["n_test"]` crops
    from the test quadrants to test/good and to test/<kind> for each `plant` kind (a function
    (image, rng, texture) -> (image, bool mask)), with masks in ground_truth/<kind>/. The folder is
    written to a temporary folder and renamed, so concurrent runs never see half of one; an existing
    complete folder (benchmark.json present) is reused. Shared by the benchmark and the held-out
    generator (`zoo.families.patchcore.heldout`), so the two differ only in their defects.
    """
    from PIL import Image

    if (dest / "benchmark.json").is_file():
        return dest
    tex, size, n_test = _texture(texture), meta["image_size"], meta["n_test"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        def save(arr, rel):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8)).save(path)

        for i in range(meta["n_train"]):
            save(_crop(tex, _TRAIN_BOXES, size, rng), f"train/good/{i:03d}.png")
        for i in range(n_test):
            save(_crop(tex, _TEST_BOXES, size, rng), f"test/good/{i:03d}.png")
        for kind, fn in plant.items():
            for i in range(n_test):
                img, mask = fn(_crop(tex, _TEST_BOXES, size, rng), rng, tex)
                save(img, f"test/{kind}/{i:03d}.png")
                save(mask.astype(np.float32), f"ground_truth/{kind}/{i:03d}_mask.png")
        (tmp / "benchmark.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished the same folder first: theirs is identical
            if not (dest / "benchmark.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


# --------------------------------------------------------------------------- Fashion-MNIST one-class


def read_fashion_mnist_oneclass(normal_class: int, root: str | os.PathLike | None = None, *,
                                n_train: int | None = None, n_test: int | None = None,
                                seed: int = 0) -> tuple[AnomalySet, AnomalySet]:
    """One class of Fashion-MNIST is normal, the nine others anomalous (image level, no masks).

    Args:
        normal_class: 0-9 (see FASHION_LABELS).
        root: a folder with the IDX files (default: see `zoo.data.images.fashion_mnist`).
        n_train: normal training images drawn from the class's 6,000 (None = all).
        n_test: normal test images drawn from the class's 1,000 and as many anomalous ones drawn
            from the 9,000 others (None = the whole test split: 1,000 normal, 9,000 anomalous).
        seed: the draws.

    Returns:
        (train, test) AnomalySets of 28x28 images repeated to three channels.
    """
    if not 0 <= normal_class <= 9:
        raise ValueError(f"Fashion-MNIST one-class: normal_class must be 0-9, got {normal_class}")
    # the cnn family's reader (Debian package, data root, download), looked up when called so that a
    # replacement of zoo.data.images.fashion_mnist (tests, plugins) is seen whatever imported this module first
    train_set, test_set = images.fashion_mnist(root)
    x_train, y_train = train_set.images[:, 0].numpy(), train_set.labels.numpy()
    x_test, y_test = test_set.images[:, 0].numpy(), test_set.labels.numpy()
    rng = np.random.default_rng(seed)

    def draw(pool: np.ndarray, n: int | None) -> np.ndarray:
        return np.sort(rng.permutation(pool)[:n]) if n is not None else pool

    train_idx = draw(np.flatnonzero(y_train == normal_class), n_train)
    normal = draw(np.flatnonzero(y_test == normal_class), n_test)
    anomalous = draw(np.flatnonzero(y_test != normal_class), n_test)
    test_idx = np.concatenate([normal, anomalous])

    def build(x, y, idx, split) -> AnomalySet:
        images = torch.from_numpy(np.ascontiguousarray(x[idx]))[:, None].expand(-1, 3, -1, -1).contiguous()
        labels = torch.from_numpy((y[idx] != normal_class).astype(np.int64))
        kinds = ["good" if c == normal_class else FASHION_LABELS[c] for c in y[idx]]
        return AnomalySet(images, labels, None, kinds, [f"{split}/{i}" for i in idx])

    return build(x_train, y_train, train_idx, "train"), build(x_test, y_test, test_idx, "t10k")


def texture_sample(texture: str = "brick", kind: str = "scratch", *, image_size: int = 224,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One test-region crop of `texture` with a planted defect `kind` (or "good"), made in memory.

    Returns (image (H, W, 3) float32 in [0, 1], mask (H, W) bool): the pictures of `zoo predict`
    and the tour when no input is given.
    """
    if kind != "good" and kind not in _PLANT:
        raise ValueError(f"texture sample: unknown defect {kind!r}; choose good or one of {', '.join(DEFECTS)}")
    tex = _texture(texture)
    rng = np.random.default_rng([seed, TEXTURES.index(texture), 1 + ([*DEFECTS, "good"].index(kind))])
    img = _crop(tex, _TEST_BOXES, image_size, rng)
    if kind == "good":
        return img, np.zeros(img.shape[:2], bool)
    return _PLANT[kind](img, rng, tex)
