"""Volumes with label maps: real MRI templates, a procedural generator, user folders, patch sampling.

Sources
  mni152_tissue()   MNI152 2009a T1w template and its grey/white-matter probability maps, shipped in
                    the nilearn wheel (nilearn/datasets/data/mni_icbm152_*), turned into labels
                    background / grey matter / white matter by TISSUE_RULE.
  colin27_gm()      Colin27 (ch2bet.nii.gz) with the grey matter that the AAL atlas delineates on it
                    (Debian package mricron-data, /usr/share/mricron/templates).
  synthetic_volumes()  ellipsoids (darker) and boxes (brighter) under blur, bias field and noise.
  read_pairs(root)  a folder of image/label pairs (NIfTI or NumPy), validated before anything runs.

Conventions: an image is (C, D, H, W) float32, a label map (D, H, W) int64, and array axes are the
file's voxel axes (no reorientation; the affine maps them to world millimetres). Intensities are
normalised by `normalise_intensity`.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from zoo.deps import require

EXTENSIONS = (".nii.gz", ".nii", ".npy")
TISSUE_LABELS = ["background", "grey_matter", "white_matter"]
TISSUE_RULE = ("label = argmax(1 - p_gm - p_wm, p_gm, p_wm) of the grey/white-matter probabilities averaged "
               "over each output voxel; the template is skull-stripped, so CSF and everything outside the "
               "brain fall into background")
SYNTHETIC_LABELS = ["background", "ellipsoid", "box"]
COLIN27_DIR = "/usr/share/mricron/templates"
MNI152_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
                "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
                "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}


# --------------------------------------------------------------------------- files


def split_ext(path: Path) -> tuple[str, str]:
    """("case01", ".nii.gz") for case01.nii.gz; ("", "") when the extension is not a volume's."""
    for ext in EXTENSIONS:
        if path.name.endswith(ext):
            return path.name[: -len(ext)], ext
    return "", ""


def load_volume(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """(array, affine 4x4, voxel spacing in mm) of a .nii/.nii.gz (nibabel) or .npy file.

    NIfTI arrays keep the file's voxel axes, a 4D NIfTI has channels last. A .npy file has no
    geometry: identity affine, spacing 1 mm.
    """
    path = Path(path)
    _, ext = split_ext(path)
    if ext == ".npy":
        arr = np.load(path, allow_pickle=False)
        return arr, np.eye(4), (1.0, 1.0, 1.0)
    if ext in (".nii", ".nii.gz"):
        nib = require("nibabel", "medical")

        img = nib.load(str(path))
        zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
        return np.asarray(img.dataobj), np.asarray(img.affine, dtype=np.float64), zooms  # type: ignore[return-value]
    raise ValueError(f"{path}: not a volume file; expected one of {', '.join(EXTENSIONS)}")


def save_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray) -> Path:
    nib = require("nibabel", "medical")

    path = Path(path)
    nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64)), str(path))
    return path


def as_channels_first(arr: np.ndarray, path: Path) -> np.ndarray:
    """(C, D, H, W) from a 3D volume or a 4D one (NIfTI: channels last; NumPy: channels first)."""
    if arr.ndim == 3:
        return arr[None]
    if arr.ndim == 4:
        return np.moveaxis(arr, -1, 0) if split_ext(path)[1] != ".npy" else arr
    raise ValueError(f"{path}: expected a 3D image (D, H, W) or 4D with channels, got shape {arr.shape}")


# --------------------------------------------------------------------------- intensities and resolution


def normalise_intensity(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-channel z-score over the non-zero voxels; exact zeros stay 0.

    Skull-stripped MRI and padded scans mark "outside" with exact zeros: they are left out of the
    statistics and stay 0, so zero padding in sliding-window inference means "outside" too.
    Images without zeros are z-scored as a whole.
    """
    x = torch.as_tensor(np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray) else image).float()
    out = torch.zeros_like(x)
    for c in range(x.shape[0]):
        inside = x[c] != 0
        if not inside.any():
            continue
        vals = x[c][inside]
        out[c] = torch.where(inside, (x[c] - vals.mean()) / vals.std().clamp_min(1e-6), 0.0)
    return out


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Average non-overlapping factor^3 blocks of the last three axes (zero-padded to a multiple)."""
    if factor == 1:
        return arr.astype(np.float32)
    pad = [(0, 0)] * (arr.ndim - 3) + [(0, -s % factor) for s in arr.shape[-3:]]
    a = np.pad(arr.astype(np.float32), pad)
    d, h, w = (s // factor for s in a.shape[-3:])
    a = a.reshape(*a.shape[:-3], d, factor, h, factor, w, factor)
    return a.mean(axis=(-5, -3, -1))


def block_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """The affine of `block_mean(..., factor)`: voxels `factor` times larger, centred on their blocks."""
    out = np.array(affine, dtype=np.float64)
    out[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2) + affine[:3, 3]
    out[:3, :3] = affine[:3, :3] * factor
    return out


def resolution_factor(resolution_mm: float) -> int:
    factor = round(resolution_mm)
    if factor < 1 or abs(factor - resolution_mm) > 1e-6:
        raise ValueError(f"data.resolution_mm must be a whole number of millimetres (1, 2, 3...), got {resolution_mm}")
    return factor


# --------------------------------------------------------------------------- real MRI


def nilearn_data_dir() -> Path:
    """The folder of data files in the nilearn wheel (it ships the MNI152 template)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        require("nilearn", "medical")  # raises MissingExtra naming the install
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def mni152_tissue(resolution_mm: float = 2) -> dict:
    """MNI152 (ICBM 2009a, symmetric) T1w with background/GM/WM labels at `resolution_mm`.

    Returns {"image": (1, D, H, W) float32 normalised, "label": (D, H, W) int64, "affine": 4x4}.
    The label rule is TISSUE_RULE; the probabilities are averaged to the output resolution first,
    so each label is the majority tissue of its voxel.
    """
    root = nilearn_data_dir()
    arrays = {}
    for key, name in MNI152_FILES.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall nilearn (its wheel ships the MNI152 files)")
        arrays[key], affine, _ = load_volume(path)
    factor = resolution_factor(resolution_mm)
    t1 = block_mean(arrays["t1"], factor)
    gm, wm = block_mean(arrays["gm"] / 255.0, factor), block_mean(arrays["wm"] / 255.0, factor)
    label = np.argmax(np.stack([1 - gm - wm, gm, wm]), axis=0)
    return {"image": normalise_intensity(t1[None]), "label": torch.from_numpy(label).long(),
            "affine": block_affine(affine, factor)}


def colin27_gm(resolution_mm: float = 2, root: str | Path = COLIN27_DIR) -> dict:
    """Colin27 (skull-stripped ch2bet) with the grey-matter mask the AAL atlas draws on it.

    AAL (Tzourio-Mazoyer 2002) parcellates Colin27's grey matter (cortex, deep nuclei,
    cerebellum), so AAL > 0 inside the brain is an independent grey-matter label for this subject.
    No white-matter label can be derived honestly: brain minus AAL mixes white matter with CSF,
    ventricles and grey matter AAL leaves out. At a coarser resolution a voxel is grey matter when
    most of its 1 mm voxels are.

    Returns {"image": (1, D, H, W) float32 normalised, "gm": (D, H, W) bool, "affine": 4x4}.
    """
    root = Path(root)
    paths = {"t1": root / "ch2bet.nii.gz", "aal": root / "aal.nii.gz"}
    for path in paths.values():
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: install the Debian package mricron-data "
                                    "(or point data.colin27_dir at a folder with ch2bet.nii.gz and aal.nii.gz)")
    t1, affine, _ = load_volume(paths["t1"])
    aal, _, _ = load_volume(paths["aal"])
    if t1.shape != aal.shape:
        raise ValueError(f"{paths['aal']}: shape {aal.shape} differs from {paths['t1']} {t1.shape}")
    factor = resolution_factor(resolution_mm)
    gm = block_mean(((aal > 0) & (t1 > 0)).astype(np.float32), factor) > 0.5
    return {"image": normalise_intensity(block_mean(t1, factor)[None]), "gm": torch.from_numpy(gm),
            "affine": block_affine(affine, factor)}


# --------------------------------------------------------------------------- procedural volumes


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))  # uniform over O(3); reflections do not matter for these shapes


def _smooth_field(shape: tuple[int, ...], rng: np.random.Generator, grid: int = 4) -> torch.Tensor:
    coarse = torch.from_numpy(rng.normal(size=(1, 1, grid, grid, grid)).astype(np.float32))
    return torch.nn.functional.interpolate(coarse, size=shape, mode="trilinear", align_corners=True)[0, 0]


def synthetic_volume(shape: tuple[int, int, int], rng: np.random.Generator, objects_per_64: tuple[int, int] = (5, 10),
                     noise: float = 0.2, bias: float = 0.3, blur: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """One generated volume: randomly rotated ellipsoids (label 1) and boxes (label 2).

    Ellipsoids (half-axes 6-12 voxels) draw their intensity from U(0.3, 0.6), boxes (half-sides
    5-9.5) from U(0.7, 1.0): apart in the clean image, as the classes of MONAI's generator, but the
    bias field below scales intensities by about 0.55-1.8x (two standard deviations) across the
    volume, so brightness alone does not separate the classes everywhere and shape and local
    contrast have to help. The number of objects is drawn from `objects_per_64` per 64^3 voxels
    (fewer when they do not fit), and objects keep a gap of at least 2 voxels. The image is
    blurred (a Gaussian point-spread function, sigma `blur` voxels), multiplied by a smooth bias
    field exp(bias * field) and given Gaussian noise of std `noise` (object contrast 0.3 to 1.0
    over a background of 0).

    Returns (image (1, D, H, W) float32, not yet normalised; label (D, H, W) int64).
    """
    label = np.zeros(shape, np.int64)
    image = np.zeros(shape, np.float32)
    per_64 = rng.integers(objects_per_64[0], objects_per_64[1] + 1)
    target = max(1, round(per_64 * math.prod(shape) / 64**3))
    spheres: list[tuple[np.ndarray, float]] = []  # bounding spheres of the objects placed so far
    for _ in range(50 * target):  # rejection sampling of non-overlapping objects
        if len(spheres) == target:
            break
        kind = int(rng.integers(1, 3))
        half = rng.uniform(6, 12, size=3) if kind == 1 else rng.uniform(5, 9.5, size=3)
        reach = float(half.max() if kind == 1 else np.linalg.norm(half))
        centre = np.array([rng.uniform(min(reach, s / 2), max(s - reach, s / 2)) for s in shape])
        if any(np.linalg.norm(centre - c) < reach + r + 2 for c, r in spheres):  # a 2-voxel gap at least
            continue
        # work in the object's bounding cube, not the whole volume
        lo = np.maximum(0, np.floor(centre - reach).astype(int))
        hi = np.minimum(shape, np.ceil(centre + reach + 1).astype(int))
        axes = [np.arange(a, b, dtype=np.float32) for a, b in zip(lo, hi)]
        u = (np.stack(np.meshgrid(*axes, indexing="ij"), -1) - centre) @ _random_rotation(rng)  # object frame
        inside = (((u / half) ** 2).sum(-1) <= 1) if kind == 1 else (np.abs(u) <= half).all(-1)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        label[box][inside] = kind
        image[box][inside] = rng.uniform(0.3, 0.6) if kind == 1 else rng.uniform(0.7, 1.0)
        spheres.append((centre, reach))
    img = torch.from_numpy(image)[None, None]
    if blur > 0:
        radius = max(1, math.ceil(3 * blur))
        k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float32) / blur) ** 2)
        k = k / k.sum()
        for axis in range(3):
            shape_k = [1, 1, 1, 1, 1]
            shape_k[2 + axis] = len(k)
            pad = [0, 0, 0, 0, 0, 0]
            pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
            img = torch.nn.functional.conv3d(torch.nn.functional.pad(img, pad, mode="replicate"), k.view(shape_k))
    img = img[0] * torch.exp(bias * _smooth_field(shape, rng))
    img = img + noise * torch.from_numpy(rng.normal(size=img.shape).astype(np.float32))
    return img, torch.from_numpy(label)


def synthetic_volumes(n: int, shape: tuple[int, int, int], seed: int, **kwargs) -> tuple[list, list]:
    """`n` volumes from `synthetic_volume` with one seed: (images normalised, labels)."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        img, lab = synthetic_volume(tuple(shape), rng, **kwargs)
        images.append(normalise_intensity(img))
        labels.append(lab)
    return images, labels


# --------------------------------------------------------------------------- user folders


@dataclass
class Case:
    """One validated image/label pair of a user folder."""

    name: str
    image: np.ndarray  # (C, D, H, W) as read
    label: np.ndarray  # (D, H, W) int64
    affine: np.ndarray
    spacing: tuple[float, float, float]
    files: list[Path] = field(default_factory=list)


def _find_images(img_dir: Path, stem: str, label_path: Path) -> list[Path]:
    """images/<stem>.<ext>, or the nnU-Net modality files images/<stem>_0000.<ext>, _0001, ..."""
    for ext in EXTENSIONS:
        if (img_dir / f"{stem}{ext}").is_file():
            return [img_dir / f"{stem}{ext}"]
    found = []
    for ext in EXTENSIONS:
        i = 0
        while (img_dir / f"{stem}_{i:04d}{ext}").is_file():
            found.append(img_dir / f"{stem}_{i:04d}{ext}")
            i += 1
        if found:
            return found
    raise ValueError(f"{label_path}: no image for it; expected {img_dir / stem}.nii.gz (or .nii/.npy), "
                     f"or modality files {img_dir / stem}_0000.nii.gz, _0001, ...")


def _same_spacing(a, b) -> bool:
    return np.allclose(a, b, rtol=1e-3, atol=1e-4)


def read_pairs(root: str | Path) -> list[Case]:
    """Read and validate every image/label pair of a folder, before any training starts.

    Layout (nnU-Net's habit)::

        root/images/<case>.nii.gz            one modality (a 4D NIfTI holds channels last)
        root/images/<case>_0000.nii.gz ...   or one file per modality
        root/labels/<case>.nii.gz            integer labels 0..K-1, same grid as the image

    .nii, .nii.gz and .npy may be mixed (.npy images are (D, H, W) or (C, D, H, W)). Errors name
    the file: missing partners, shapes that differ, labels that are not non-negative integers,
    spacings that differ between an image and its label or between cases, channel counts that
    differ between cases.
    """
    root = Path(root)
    img_dir, lab_dir = root / "images", root / "labels"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        raise FileNotFoundError(f"{root}: expected the folders images/ and labels/ "
                                "(images/<case>.nii.gz with labels/<case>.nii.gz)")
    label_files = sorted(p for p in lab_dir.iterdir() if split_ext(p)[1])
    if not label_files:
        raise ValueError(f"{lab_dir}: no label files ({', '.join(EXTENSIONS)})")
    used: set[Path] = set()
    cases: list[Case] = []
    for lab_path in label_files:
        stem = split_ext(lab_path)[0]
        img_paths = _find_images(img_dir, stem, lab_path)
        used.update(img_paths)
        channels, spacing, affine = [], None, None
        for p in img_paths:
            arr, aff, sp = load_volume(p)
            arr = as_channels_first(arr, p)
            if channels and arr.shape[1:] != channels[0].shape[1:]:
                raise ValueError(f"{p}: shape {arr.shape[1:]} differs from {img_paths[0]} {channels[0].shape[1:]}")
            if spacing is not None and not _same_spacing(sp, spacing):
                raise ValueError(f"{p}: spacing {sp} mm differs from {img_paths[0]} {spacing} mm")
            if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
                raise ValueError(f"{p}: image values must be finite numbers")
            channels.append(arr)
            spacing, affine = spacing or sp, aff if affine is None else affine
        image = np.concatenate(channels).astype(np.float32)
        label, _, lab_spacing = load_volume(lab_path)
        label = label[..., 0] if label.ndim == 4 and label.shape[-1] == 1 else label
        if label.shape != image.shape[1:]:
            raise ValueError(f"{lab_path}: label shape {label.shape} differs from image {img_paths[0]} "
                             f"shape {image.shape[1:]}")
        if not _same_spacing(lab_spacing, spacing):
            raise ValueError(f"{lab_path}: spacing {lab_spacing} mm differs from image {img_paths[0]} {spacing} mm")
        if not np.issubdtype(label.dtype, np.integer):
            bad = label[~np.isfinite(label) | (label != np.round(label))] if np.issubdtype(label.dtype, np.number) \
                else label.ravel()
            if bad.size:
                raise ValueError(f"{lab_path}: label values must be integers, found {bad.ravel()[0]!r}")
        if label.min() < 0:
            raise ValueError(f"{lab_path}: label values must be >= 0, found {label.min()}")
        cases.append(Case(stem, image, label.astype(np.int64), affine, spacing, [*img_paths, lab_path]))
    orphans = sorted(p for p in img_dir.iterdir() if split_ext(p)[1] and p not in used)
    if orphans:
        raise ValueError(f"{orphans[0]}: image without a label file in {lab_dir}")
    first = cases[0]
    for case in cases[1:]:
        if case.image.shape[0] != first.image.shape[0]:
            raise ValueError(f"{case.files[0]}: {case.image.shape[0]} channels, but {first.files[0]} has "
                             f"{first.image.shape[0]}; every case needs the same modalities")
        if not _same_spacing(case.spacing, first.spacing):
            raise ValueError(f"{case.files[0]}: spacing {case.spacing} mm differs from {first.files[0]} "
                             f"{first.spacing} mm; resample the cases to one spacing first")
    return cases


# --------------------------------------------------------------------------- training patches


class PatchDataset:
    """Training patches cut from volumes held in memory, a whole batch per `get_batch` call.

    Patch corners are drawn once from `seed` (a pool of `n_patches`; the engine shuffles the pool
    each epoch). A fraction `foreground_ratio` is centred on a random foreground voxel (nnU-Net's
    oversampling, so small structures are seen), the rest is uniform. Every patch lies inside its
    volume's `box` (lo, hi) when one is given, which is how a held-out region stays unseen.
    Volumes are zero-padded to a common shape (at least the patch) and stacked, so `get_batch`
    gathers all patches in one indexing operation.

    Shapes:
        - get_batch(idx) -> {"image": (B, C, *patch) float32, "label": (B, *patch) int64}
    """

    def __init__(self, images: list[torch.Tensor], labels: list[torch.Tensor], patch: tuple[int, int, int],
                 n_patches: int, seed: int, foreground_ratio: float = 0.5,
                 boxes: list[tuple[tuple[int, ...], tuple[int, ...]]] | None = None) -> None:
        self.patch = tuple(patch)
        full = [max([im.shape[1 + a] for im in images] + [self.patch[a]]) for a in range(3)]
        n, c = len(images), images[0].shape[0]
        self.images = torch.zeros(n, c, *full)
        self.labels = torch.zeros(n, *full, dtype=torch.uint8 if max(int(lab.max()) for lab in labels) < 256
                                  else torch.int64)
        for i, (im, lab) in enumerate(zip(images, labels)):
            d, h, w = im.shape[1:]
            self.images[i, :, :d, :h, :w] = im
            self.labels[i, :d, :h, :w] = lab.to(self.labels.dtype)
        rng = np.random.default_rng(seed)
        positions = np.zeros((n_patches, 4), np.int64)
        vols = rng.integers(0, n, n_patches)
        for v in range(n):
            lo, hi = boxes[v] if boxes else ((0, 0, 0), tuple(full))
            shape = tuple(images[v].shape[1:])
            if boxes:
                short = [a for a in range(3) if hi[a] - lo[a] < self.patch[a]]
                if short:
                    raise ValueError(f"training region {lo}..{hi} of volume {v} is smaller than the patch "
                                     f"{self.patch} along axis {short[0]}")
            else:
                hi = tuple(max(s, p) for s, p in zip(shape, self.patch))
            last = np.array(hi) - np.array(self.patch)  # largest valid corner
            pick = np.flatnonzero(vols == v)
            corners = rng.integers(np.array(lo), last + 1, size=(len(pick), 3))
            fg = torch.nonzero(labels[v][lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] > 0).numpy() + np.array(lo)
            centred = rng.random(len(pick)) < foreground_ratio
            if len(fg) and centred.any():
                centres = fg[rng.integers(0, len(fg), int(centred.sum()))]
                corners[centred] = np.clip(centres - np.array(self.patch) // 2, lo, last)
            positions[pick, 0] = v
            positions[pick, 1:] = corners
        self.positions = torch.from_numpy(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def get_batch(self, idx: torch.Tensor) -> dict:
        pos = self.positions[idx]
        z, y, x = (pos[:, 1 + a, None] + torch.arange(self.patch[a]) for a in range(3))
        v = pos[:, 0, None, None, None]
        zi, yi, xi = z[:, :, None, None], y[:, None, :, None], x[:, None, None, :]
        # advanced indices on both sides of the channel slice put the batch dims first: (B, P, P, P, C)
        image = self.images[v, :, zi, yi, xi].permute(0, 4, 1, 2, 3).contiguous()
        return {"image": image, "label": self.labels[v, zi, yi, xi].long()}


@dataclass
class EvalVolume:
    """A whole volume (or held-out region) that evaluation segments with the sliding window."""

    name: str
    image: torch.Tensor  # (C, D, H, W)
    label: torch.Tensor  # (D, H, W) int64


class EvalSet(list):
    """The evaluation volumes of a split, their class names, and binary checks on other subjects.

    `checks` holds (metric name, image, mask, class index): the Dice between
    `prediction == class index` and `mask` (Colin27's grey matter).
    """

    def __init__(self, volumes=(), labels=(), checks=()):
        super().__init__(volumes)
        self.labels = list(labels)
        self.checks = list(checks)
