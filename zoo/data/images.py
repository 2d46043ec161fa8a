"""Image classification data as in-memory uint8 tensors: Fashion-MNIST, scikit-learn digits, your folders.

Sources
  fashion_mnist(root)   the official 60,000 / 10,000 split, read from the idx .gz files of the
                        Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist),
                        `root`, `data_root()/fashion-mnist`, else torchvision's download into zoo's cache.
  digits_split()        scikit-learn's 1,797 8x8 digits with a fixed stratified 50% test split
                        (train_test_split(test_size=0.5, stratify=y, random_state=0)).
  read_image_folder()   ImageFolder layout: ROOT/<class>/<image>, optionally ROOT/{train,val,test}/<class>/.
  read_image_csv()      a CSV of `path,label` rows (paths relative to the CSV file).

Every reader returns `ImageSet`s: images (N, C, H, W) uint8, labels (N,) int64, class names. User
data is validated before anything trains: unreadable files, empty classes, images whose modes
or sizes cannot be reconciled are errors that name the file.
"""

from __future__ import annotations

import csv
import gzip
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zoo.utils import cache_dir, data_root

log = logging.getLogger("zoo")

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                       "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_MNIST_LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                        "Bag", "Ankle boot"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GREY_MODES = {"1", "L", "LA"}
COLOUR_MODES = {"RGB", "RGBA", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}
SPLIT_DIRS = ("train", "val", "test")


@dataclass
class ImageSet:
    """Images (N, C, H, W) uint8 and labels (N,) int64, with the files they came from (if any)."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    files: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx) -> ImageSet:
        idx = torch.as_tensor(idx, dtype=torch.long)
        files = [self.files[i] for i in idx.tolist()] if self.files is not None else None
        return ImageSet(self.images[idx], self.labels[idx], self.classes, files)


# --------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format, optionally gzipped) as a uint8 array, its header checked."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: cannot read idx file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an idx file of unsigned bytes (magic {raw[:4].hex()}, expected 000008xx)")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    if len(raw) - offset != int(np.prod(dims)):
        raise ValueError(f"{path}: header says shape {dims} ({int(np.prod(dims))} bytes) but the file holds "
                         f"{len(raw) - offset} bytes of data (truncated download?)")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _find_fashion_mnist(root: str | Path | None) -> Path | None:
    if root:  # an explicit folder is the only place looked at
        candidates = [Path(root).expanduser()]
    else:
        candidates = [Path(d) for d in FASHION_MNIST_DIRS]
        candidates += [data_root() / "fashion-mnist", data_root() / "FashionMNIST" / "raw",
                       cache_dir("fashion-mnist") / "FashionMNIST" / "raw"]  # an earlier download
    names = [n for pair in FASHION_MNIST_FILES.values() for n in pair]
    for folder in candidates:
        if all((folder / n).is_file() for n in names):
            return folder
    if root:
        missing = [n for n in names if not (Path(root).expanduser() / n).is_file()]
        raise ValueError(f"data.root={root}: no Fashion-MNIST idx files there (missing {', '.join(missing)})")
    return None


def fashion_mnist(root: str | Path | None = None, download: bool = True) -> tuple[ImageSet, ImageSet]:
    """(train 60,000, test 10,000) Fashion-MNIST as (N, 1, 28, 28) uint8 (Xiao et al. 2017).

    Looks in `root`, the Debian package's folder, data_root() and zoo's cache; otherwise torchvision
    downloads the files into the cache (`zoo.utils.cache_dir`; only when `download`). The data root
    (ZOO_DATA) is read-only input: nothing is ever written there.
    """
    folder = _find_fashion_mnist(root)
    sets = []
    if folder is not None:
        for split in ("train", "test"):
            img_file, lab_file = FASHION_MNIST_FILES[split]
            images, labels = read_idx(folder / img_file), read_idx(folder / lab_file)
            if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != (len(images),):
                raise ValueError(f"{folder}: {split} images {images.shape} and labels {labels.shape} are not "
                                 "N x 28 x 28 images with N labels")
            sets.append(ImageSet(torch.from_numpy(images.copy())[:, None], torch.from_numpy(labels.astype(np.int64)),
                                 list(FASHION_MNIST_LABELS)))
        return sets[0], sets[1]
    if not download:
        raise ValueError(f"Fashion-MNIST not found in {', '.join(FASHION_MNIST_DIRS)} or {data_root()}")
    from torchvision.datasets import FashionMNIST

    target = cache_dir("fashion-mnist")
    log.warning("zoo: Fashion-MNIST not found locally, downloading it into %s with torchvision", target)
    for train in (True, False):
        ds = FashionMNIST(str(target), train=train, download=True)
        sets.append(ImageSet(ds.data[:, None].contiguous(), ds.targets.long(), list(FASHION_MNIST_LABELS)))
    return sets[0], sets[1]


# --------------------------------------------------------------------------- scikit-learn digits


def digits_split(test_fraction: float = 0.5, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """scikit-learn's 8x8 digits (values 0-16, scaled to 0-255) split into (train, test), stratified."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=test_fraction,
                                           stratify=digits.target, random_state=seed)
    full = ImageSet(torch.from_numpy(images), torch.from_numpy(digits.target.astype(np.int64)),
                    [str(i) for i in range(10)])
    return full.subset(idx_train), full.subset(idx_test)


# --------------------------------------------------------------------------- your own images


def open_images(files: list[Path], image_size: list[int] | None, channels: int | None) -> torch.Tensor:
    """Read, check and stack image files into (N, C, H, W) uint8; every problem names its file."""
    from PIL import Image, UnidentifiedImageError

    opened = []
    for path in files:
        try:
            with Image.open(path) as img:
                img.load()
                opened.append((path, img.copy()))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            raise ValueError(f"cannot read image {path}: {e}") from e
    modes = Counter(img.mode for _, img in opened)
    for path, img in opened:
        if img.mode not in GREY_MODES | COLOUR_MODES:
            raise ValueError(f"{path}: image mode {img.mode!r} (16-bit or float pixels) cannot be reconciled with "
                             f"8-bit images; convert it to 8-bit grey (L) or RGB. Modes found: {dict(modes)}")
    if channels is None:
        channels = 1 if set(modes) <= GREY_MODES else 3
    if channels not in (1, 3):
        raise ValueError(f"data.channels must be 1 or 3 for image files, got {channels}")
    if channels == 3 and set(modes) & GREY_MODES and set(modes) - GREY_MODES:
        log.warning("zoo: mixed grey and colour images (%s): grey images are read as RGB", dict(modes))
    sizes = Counter(img.size for _, img in opened)  # PIL sizes are (W, H)
    if image_size is None and len(sizes) > 1:
        examples = {size: next(str(p) for p, img in opened if img.size == size) for size in sizes}
        listing = "; ".join(f"{w}x{h} (W x H): {n} images, e.g. {examples[(w, h)]}"
                            for (w, h), n in sizes.most_common())
        raise ValueError(f"images of different sizes cannot be batched: {listing}. "
                         "Set data.image_size=[H, W] to resize them all")
    out = []
    for _path, img in opened:
        img = img.convert("L" if channels == 1 else "RGB")
        if image_size is not None and img.size != (image_size[1], image_size[0]):
            img = img.resize((image_size[1], image_size[0]), Image.BILINEAR)
        arr = np.asarray(img, dtype=np.uint8)
        out.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out))


def _class_folders(root: Path) -> tuple[list[str], dict[str, list[Path]]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        stray = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:3]
        hint = f" (found loose images such as {', '.join(stray)})" if stray else ""
        raise ValueError(f"{root}: expected one sub-folder per class (ImageFolder layout ROOT/<class>/<image>), "
                         f"found none{hint}")
    files = {}
    for name in classes:
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise ValueError(f"class folder {root / name} has no images (extensions: {', '.join(IMAGE_EXTENSIONS)})")
        files[name] = found
    return classes, files


def read_image_folder(root: str | Path, image_size: list[int] | None = None,
                      channels: int | None = None) -> dict[str, ImageSet]:
    """Class folders -> {"all": ImageSet} or, with train/ (val/, test/) sub-folders, one ImageSet each.

    Class names are the sorted folder names (torchvision's ImageFolder order); a split folder
    must hold the same classes as train/. Grey images give 1 channel unless any image has
    colour (or `channels` says otherwise); sizes must agree unless `image_size` = [H, W] is set.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise ValueError(f"data.root={root}: no such folder (expected ImageFolder layout ROOT/<class>/<image>)")
    splits = [s for s in SPLIT_DIRS if (root / s).is_dir()]
    if splits and "train" not in splits:
        raise ValueError(f"{root}: has {', '.join(splits)}/ but no train/ folder")
    layout = {s: root / s for s in splits} if splits else {"all": root}
    classes, per_split = None, {}
    for split, folder in layout.items():
        names, files = _class_folders(folder)
        if classes is None:
            classes = names
        elif names != classes:
            raise ValueError(f"{folder}: classes {names} differ from train/'s {classes}")
        per_split[split] = [(f, i) for i, name in enumerate(names) for f in files[name]]
    all_files = [f for items in per_split.values() for f, _ in items]
    images = open_images(all_files, image_size, channels)
    out, start = {}, 0
    for split, items in per_split.items():
        n = len(items)
        out[split] = ImageSet(images[start:start + n], torch.tensor([i for _, i in items]), list(classes),
                              [str(f) for f, _ in items])
        start += n
    return out


def read_image_csv(path: str | Path, image_size: list[int] | None = None, channels: int | None = None) -> ImageSet:
    """A CSV of `path,label` rows (an optional `path,label` header; paths relative to the CSV).

    Labels are class names (sorted to give indices) or integers 0..K-1 used as they are.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ValueError(f"data.root={path}: no such CSV file (expected rows of path,label)")
    rows = []
    with open(path, newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{line_no}: expected 2 columns path,label, got {len(row)}: {row}")
            if line_no == 1 and [c.strip().lower() for c in row] == ["path", "label"]:
                continue
            file = (path.parent / row[0].strip()).resolve()
            if not file.is_file():
                raise ValueError(f"{path}:{line_no}: image {file} does not exist")
            rows.append((file, row[1].strip()))
    if not rows:
        raise ValueError(f"{path}: no rows (expected path,label lines)")
    names = sorted({label for _, label in rows})
    if all(n.isdigit() for n in names):
        k = max(int(n) for n in names) + 1
        classes, index = [str(i) for i in range(k)], {str(i): i for i in range(k)}
        for n in names:
            index[n] = int(n)  # "007" and "7" are the same class
        missing = sorted(set(range(k)) - {int(n) for n in names})
        if missing:
            raise ValueError(f"{path}: integer labels 0..{k - 1} but classes {missing} have no rows")
    else:
        classes, index = names, {n: i for i, n in enumerate(names)}
    images = open_images([f for f, _ in rows], image_size, channels)
    return ImageSet(images, torch.tensor([index[label] for _, label in rows]), classes, [str(f) for f, _ in rows])


def stratified_split(labels: torch.Tensor, fraction_or_count: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(keep, held_out) indices: the same fraction of every class held out (at least one per class
    when the class has two or more images), drawn with a fixed seed."""
    n = len(labels)
    fraction = fraction_or_count / n if fraction_or_count >= 1 else fraction_or_count
    g = torch.Generator().manual_seed(seed)
    keep, held = [], []
    for c in labels.unique().tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(len(idx) - 1, max(1, round(fraction * len(idx)))) if len(idx) > 1 else 0
        held.append(idx[:k])
        keep.append(idx[k:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values
