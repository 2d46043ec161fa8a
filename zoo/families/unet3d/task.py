"""Volumetric segmentation: patches in, Dice + cross-entropy out, whole volumes evaluated by sliding window.

Data sources (recipe `data.source`):
  mni152     the MNI152 T1w template at `resolution_mm`, labels background / grey / white matter.
             Training patches lie entirely in the posterior part (MNI y <= test_from_mm - gap_mm);
             the test region is the anterior part (y >= test_from_mm), never seen in training and
             never used to pick a checkpoint. The split runs front/back because the template is
             left/right symmetric: one hemisphere is the mirror image of the other, so a hemisphere
             split would test on a reflection of the training data. Colin27's grey matter (AAL) is
             an extra check on a second subject.
  synthetic  generated ellipsoids and boxes; train, validation and test volumes from separate seeds.
  folder     images/ + labels/ pairs (see zoo.families.unet3d.data.read_pairs); a fraction of the cases
             is held out for validation.

Training: `zoo.augment.VolumeAugment3D` on the batch (labels follow the geometry), then the U-Net,
then soft Dice (foreground classes, over the batch) + cross-entropy; with deep supervision the
coarser outputs add the same loss against nearest-downsampled labels, weighted 1/2, 1/4, ...
Metrics: Dice per class summed over all evaluation voxels, and their foreground mean.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.augment.volume import VolumeAugment3D
from zoo.deps import require
from zoo.drawing import pyplot, save
from zoo.families.unet3d import data as V
from zoo.recipes import NUM, OPT_STR, PROB, fields_from_signature
from zoo.recipes import F as Field
from zoo.samples import sample_dir
from zoo.tasks.base import Data, Task, unwrap

# the recipe's augment keys are VolumeAugment3D's arguments, with its defaults and docs
AUGMENT_FIELDS = fields_from_signature(VolumeAugment3D, exclude=("bias_order", "label_fill"))


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> tuple[torch.Tensor, dict]:
    r"""Cross-entropy + (1 - soft Dice), Dice over the foreground classes with sums over the whole batch.

    .. math::
        L = \mathrm{CE}(z, y) + 1 - \frac{1}{K-1} \sum_{k \ge 1}
            \frac{2 \sum_i p_{ik} y_{ik} + \epsilon}{\sum_i p_{ik} + \sum_i y_{ik} + \epsilon}

    Summing over the batch ("batch Dice", nnU-Net) keeps patches without a class from dominating.

    Shapes:
        - logits: (B, K, D, H, W); target: (B, D, H, W) int64
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
    dims = (0, *range(2, logits.ndim))
    inter = (probs * onehot).sum(dims)
    dice = (2 * inter + smooth) / (probs.sum(dims) + onehot.sum(dims) + smooth)
    soft_dice = dice[1:].mean()
    return ce + 1 - soft_dice, {"ce": float(ce.detach()), "soft_dice": float(soft_dice.detach())}


def dice_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(3, K) counts: intersection, predicted and true voxels per class (summed later over volumes)."""
    p, t = pred.reshape(-1), target.reshape(-1).to(pred.device)
    k = num_classes
    return torch.stack([torch.bincount(t[p == t], minlength=k)[:k], torch.bincount(p, minlength=k)[:k],
                        torch.bincount(t, minlength=k)[:k]]).double()


class VolumeSegmentation(Task):
    name = "volume_segmentation"
    main_metric = "mean_dice"
    mode = "max"
    smoke_overrides = ("train.max_steps=4", "train.log_every=1", "data.colin27=false", "data.patches=16",
                       "data.n_train=2", "data.n_val=1", "data.n_test=1")
    DATA_SCHEMA = {
        "source": Field(str, "mni152", "mni152 | synthetic | folder"),
        "root": Field(OPT_STR, None, "folder source: a folder with images/ and labels/"),
        "patch_size": Field((int, list), 48, "training patch (and sliding-window tile)"),
        "patches": Field(int, 2000, "training patch positions drawn once; one epoch visits each", ge=1),
        "foreground_ratio": Field(NUM, 0.5, "share of patches centred on a foreground voxel", **PROB),
        "seed": Field(int, 0, "patch positions, generated volumes, folder split"),
        "overlap": Field(NUM, 0.5, "sliding-window overlap in evaluation", ge=0, lt=1),
        "sw_batch_size": Field(int, 4, "tiles per forward pass in evaluation", ge=1),
        "resolution_mm": Field(NUM, 2, "mni152/colin27: voxel size (block average of the 1 mm files)", gt=0),
        "test_from_mm": Field(NUM, 0.0, "mni152: the test region is MNI y >= this (anterior)"),
        "gap_mm": Field(NUM, 10.0, "mni152: training patches end this far before the test region"),
        "colin27": Field(bool, True, "mni152: also report grey-matter Dice on Colin27 (AAL)"),
        "colin27_dir": Field(str, V.COLIN27_DIR),
        "shape": Field(list, [96, 96, 96], "synthetic: volume shape"),
        "n_train": Field(int, 16, "synthetic: training volumes", ge=1),
        "n_val": Field(int, 2, "synthetic: validation volumes", ge=0),
        "n_test": Field(int, 8, "synthetic: test volumes", ge=1),
        "noise": Field(NUM, 0.2, "synthetic: noise std (object contrast 0.3-1)", ge=0),
        "bias": Field(NUM, 0.3, "synthetic: bias-field strength (log scale)", ge=0),
        "val_fraction": Field(NUM, 0.2, "folder: share of cases held out for validation (1: evaluate all)", **PROB),
        "num_classes": Field((int, type(None)), None, "folder: classes (default: largest label + 1)"),
        "labels": Field((list, type(None)), None, "folder: class names (default: class0, class1, ...)"),
    }
    AUGMENT_SCHEMA = {"enabled": Field(bool, True), **AUGMENT_FIELDS}

    # ----------------------------------------------------------------- data
    def build_data(self, cfg: dict, ctx) -> Data:
        patch = self._patch(cfg)
        source = cfg["source"]
        if source == "mni152":
            return self._mni152(cfg, patch)
        if source == "synthetic":
            return self._synthetic(cfg, patch)
        if source == "folder":
            return self._folder(cfg, patch)
        raise ValueError(f"data.source: unknown source {source!r}; choose mni152, synthetic or folder")

    @staticmethod
    def _patch(cfg) -> tuple[int, int, int]:
        p = cfg["patch_size"]
        patch = (p,) * 3 if isinstance(p, int) else tuple(p)
        if len(patch) != 3 or not all(isinstance(v, int) and v > 0 for v in patch):
            raise ValueError(f"data.patch_size: expected an int or three ints, got {p!r}")
        return patch  # type: ignore[return-value]

    def _mni152(self, cfg, patch) -> Data:
        vol = V.mni152_tissue(cfg["resolution_mm"])
        image, label, affine = vol["image"], vol["label"], vol["affine"]
        step, origin = affine[1, 1], affine[1, 3]  # world y = step * j + origin (no rotation in the template)
        test_start = math.ceil((cfg["test_from_mm"] - origin) / step - 1e-6)
        train_end = math.floor((cfg["test_from_mm"] - cfg["gap_mm"] - origin) / step + 1e-6) + 1
        if not 0 < train_end <= test_start < label.shape[1]:
            raise ValueError(f"data.test_from_mm={cfg['test_from_mm']} / gap_mm={cfg['gap_mm']} leave no training "
                             f"or test region in a y range of {origin:.1f}..{origin + step * label.shape[1]:.1f} mm")
        box = ((0, 0, 0), (label.shape[0], train_end, label.shape[2]))
        train = V.PatchDataset([image], [label], patch, cfg["patches"], cfg["seed"], cfg["foreground_ratio"], [box])
        checks = []
        if cfg["colin27"]:
            colin = V.colin27_gm(cfg["resolution_mm"], cfg["colin27_dir"])
            checks.append(("colin27_gm_dice", colin["image"], colin["gm"], 1))
        test = V.EvalSet([V.EvalVolume("mni152_anterior", image[:, :, test_start:], label[:, test_start:])],
                         V.TISSUE_LABELS, checks)
        res = float(cfg["resolution_mm"])
        y_train, y_test = origin + step * (train_end - 1), origin + step * test_start
        info = {"num_classes": 3, "in_chans": 1, "labels": V.TISSUE_LABELS, "patch": patch,
                "input_spec": self._input_spec(1, [res] * 3, patch, "T1w MRI, skull-stripped, MNI152 space"),
                "evaluation": f"test region: MNI y >= {y_test:.1f} mm (voxel centres; anterior brain); training "
                              f"patches lie in y <= {y_train:.1f} mm; labels: {V.TISSUE_RULE}",
                "datasets": ["MNI152 ICBM 2009a sym (nilearn)"] + (["Colin27 + AAL (mricron-data)"] if checks else [])}
        return Data(train, None, test, info)

    def _synthetic(self, cfg, patch) -> Data:
        shape = tuple(cfg["shape"])
        kw = {"noise": cfg["noise"], "bias": cfg["bias"]}
        splits = []
        for offset, n in enumerate((cfg["n_train"], cfg["n_val"], cfg["n_test"])):
            splits.append(V.synthetic_volumes(n, shape, cfg["seed"] * 1000 + offset, **kw) if n else ([], []))
        (tr_im, tr_lab), (va_im, va_lab), (te_im, te_lab) = splits
        if not tr_im:
            raise ValueError("data.n_train must be >= 1")
        train = V.PatchDataset(tr_im, tr_lab, patch, cfg["patches"], cfg["seed"], cfg["foreground_ratio"])

        def evalset(images, labels, prefix):
            if not images:
                return None
            return V.EvalSet([V.EvalVolume(f"{prefix}{i}", im, lab) for i, (im, lab) in enumerate(zip(images, labels))],
                             V.SYNTHETIC_LABELS)

        info = {"num_classes": 3, "in_chans": 1, "labels": V.SYNTHETIC_LABELS, "patch": patch,
                "input_spec": self._input_spec(1, [1.0] * 3, patch, "generated ellipsoids and boxes"),
                "evaluation": f"{cfg['n_test']} generated test volumes of {list(shape)} voxels (seeds apart from "
                              "training and validation)",
                "datasets": ["procedural ellipsoids/boxes (zoo.data.volumes.synthetic_volume)"]}
        return Data(train, evalset(va_im, va_lab, "val"), evalset(te_im, te_lab, "test"), info)

    def _folder(self, cfg, patch) -> Data:
        if not cfg["root"]:
            raise ValueError("data.root: the folder source needs a folder with images/ and labels/")
        cases = V.read_pairs(cfg["root"])
        top = max(int(c.label.max()) for c in cases)
        k = cfg["num_classes"] or max(2, top + 1)
        if top >= k:
            worst = max(cases, key=lambda c: int(c.label.max()))
            raise ValueError(f"{worst.files[-1]}: label {top} but data.num_classes={k}")
        names = cfg["labels"] or [f"class{i}" for i in range(k)]
        if len(names) != k:
            raise ValueError(f"data.labels lists {len(names)} names for {k} classes")
        order = np.random.default_rng(cfg["seed"]).permutation(len(cases))
        if cfg["val_fraction"] >= 1:  # `zoo eval TAG --data FOLDER data.val_fraction=1`: score every case
            train_cases = val_cases = cases
        else:
            n_val = max(1, round(cfg["val_fraction"] * len(cases))) if len(cases) > 1 else 0
            val_cases = [cases[i] for i in order[:n_val]]
            train_cases = [cases[i] for i in order[n_val:]]
            if not val_cases:  # one case: the metrics are on the case it trained on, and say so
                val_cases = train_cases
        images = {c.name: V.normalise_intensity(c.image) for c in cases}
        train = V.PatchDataset([images[c.name] for c in train_cases],
                               [torch.from_numpy(c.label) for c in train_cases], patch, cfg["patches"],
                               cfg["seed"], cfg["foreground_ratio"])
        val = V.EvalSet([V.EvalVolume(c.name, images[c.name], torch.from_numpy(c.label)) for c in val_cases], names)
        c = cases[0].image.shape[0]
        if val_cases is train_cases:
            held = ("the training case itself (only one case)" if len(cases) == 1 else
                    f"all {len(cases)} cases (data.val_fraction=1: for evaluation, not a held-out score)")
        else:
            held = f"{len(val_cases)} held-out case(s): {', '.join(x.name for x in val_cases)}"
        info = {"num_classes": k, "in_chans": c, "labels": names, "patch": patch,
                "input_spec": self._input_spec(c, list(cases[0].spacing), patch, f"user data from {cfg['root']}"),
                "evaluation": held, "datasets": [str(cfg["root"])]}
        return Data(train, val, None, info)

    @staticmethod
    def _input_spec(channels, spacing, patch, modality) -> dict:
        return {"channels": channels, "spacing_mm": spacing, "patch_size": list(patch), "modality": modality,
                "layout": "(B, C, D, H, W)", "normalisation": "per-channel z-score over non-zero voxels, zeros kept"}

    def model_args(self, data: Data) -> dict:
        return {"num_classes": data.info["num_classes"], "in_chans": data.info["in_chans"],
                "patch_size": list(data.info["patch"])}

    def card_extras(self, data: Data) -> dict:
        return {k: data.info[k] for k in ("input_spec", "labels", "evaluation") if k in data.info}

    def build_augment(self, cfg: dict, data: Data, device):
        if not cfg.get("enabled", True):
            return None
        params = {k: cfg[k] for k in AUGMENT_FIELDS}
        params["scale"], params["gamma"] = tuple(params["scale"]), tuple(params["gamma"])
        return VolumeAugment3D(**params).to(device)

    # ----------------------------------------------------------------- training
    def train_step(self, model, batch, ctx):
        x, y = batch["image"], batch["label"]
        if ctx.augment is not None:
            x, y = ctx.augment(x, y)
        if getattr(unwrap(model), "deep_supervision", False):
            logits, aux = model(x, return_aux=True)
        else:
            logits, aux = model(x), []
        loss, logs = dice_ce_loss(logits, y)
        if aux:
            # nnU-Net's weights: 1, 1/2, 1/4, ... normalised to sum to one
            weights = [0.5**i for i in range(len(aux) + 1)]
            total = loss * weights[0]
            for w, a in zip(weights[1:], aux):
                small = F.interpolate(y[:, None].float(), size=a.shape[2:], mode="nearest")[:, 0].long()
                total = total + w * dice_ce_loss(a, small)[0]
            loss = total / sum(weights)
        return loss, logs

    def evaluate(self, model, dataset, ctx) -> dict[str, float]:
        net = unwrap(model)
        cfg = ctx.recipe["data"]
        k = net.num_classes
        counts = torch.zeros(3, k, dtype=torch.float64)
        for vol in dataset:
            pred = net.segment(vol.image, overlap=cfg["overlap"], sw_batch_size=cfg["sw_batch_size"])
            counts += dice_scores(pred, vol.label, k)
        inter, pred_n, true_n = counts
        dice = (2 * inter / (pred_n + true_n).clamp_min(1)).tolist()
        names = dataset.labels if len(dataset.labels) == k else [f"class{i}" for i in range(k)]
        present = [i for i in range(1, k) if true_n[i] > 0]
        metrics = {"mean_dice": float(np.mean([dice[i] for i in present])) if present else 0.0}
        metrics.update({f"dice_{names[i]}": dice[i] for i in range(1, k)})
        for metric, image, mask, cls in dataset.checks:
            pred = net.segment(image, overlap=cfg["overlap"], sw_batch_size=cfg["sw_batch_size"]) == cls
            metrics[metric] = float(2 * (pred & mask).sum() / (pred.sum() + mask.sum()).clamp_min(1))
        return metrics

    # ----------------------------------------------------------------- use
    def finetune_overrides(self, data_path: str) -> list[str]:
        """`zoo finetune unet3d --data FOLDER` and `zoo eval TAG --data FOLDER`: the folder source."""
        return ["data.source=folder", f"data.root={data_path}"]

    def sample_volume(self, model) -> tuple[torch.Tensor, np.ndarray]:
        """A volume to show the model on: the scan crop its weights folder ships (samples/*.nii.gz), else the
        MNI152 template for tissue models, else a generated one."""
        net = unwrap(model)
        cfg = getattr(net, "pretrained_cfg", {}) or {}
        shipped = sorted(sample_dir(net).glob("*.nii.gz")) if sample_dir(net) is not None else []
        if shipped:
            arr, affine, _ = V.load_volume(shipped[0])
            return V.normalise_intensity(V.as_channels_first(arr, shipped[0])), affine
        if cfg.get("labels") == V.TISSUE_LABELS and net.in_chans == 1:
            spacing = (cfg.get("input_spec") or {}).get("spacing_mm") or [2.0] * 3
            vol = V.mni152_tissue(spacing[0])
            return vol["image"], vol["affine"]
        images, _ = V.synthetic_volumes(1, (64, 64, 64), seed=12345)
        return images[0].repeat(net.in_chans, 1, 1, 1), np.eye(4)

    def sample_input(self, model) -> tuple:
        image, _ = self.sample_volume(model)
        net = unwrap(model)
        starts = [max(0, (s - p) // 2) for s, p in zip(image.shape[1:], net.patch_size)]
        crop = image[:, starts[0]:starts[0] + net.patch_size[0], starts[1]:starts[1] + net.patch_size[1],
                     starts[2]:starts[2] + net.patch_size[2]]
        pad = [max(0, p - s) for p, s in zip(net.patch_size, crop.shape[1:])]
        return (F.pad(crop, (0, pad[2], 0, pad[1], 0, pad[0]))[None],)

    def draw_sample(self, model, out_path: Path) -> Path:
        image, affine = self.sample_volume(model)
        net = unwrap(model)
        labels = net.segment(image)
        title = (getattr(net, "pretrained_cfg", {}) or {}).get("tag") or "unet3d"
        return draw_slices(image[0].numpy(), labels.numpy(), Path(out_path), self._names(net), title=title,
                           spacing=tuple(np.linalg.norm(affine[:3, :3], axis=0)), axis_names=view_names(affine))

    @staticmethod
    def _names(net) -> list[str]:
        labels = (getattr(net, "pretrained_cfg", {}) or {}).get("labels")
        return labels if labels and len(labels) == net.num_classes else [f"class{i}" for i in range(net.num_classes)]

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        """Segment a volume file and write `<name>_seg.nii.gz` (the input's affine) and `<name>_slices.png`.

        `inputs`: a .nii/.nii.gz/.npy file (a 4D NIfTI holds modalities last), modality files joined
        by commas, or nothing for the sample volume. Inputs in another orientation or at another voxel
        spacing than the card's are reoriented and resampled by `zoo.transforms` (nibabel), segmented,
        and the probabilities mapped back, so the output lies on the input's grid.
        """
        net = unwrap(model)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if inputs:
            paths = [Path(p) for p in str(inputs).split(",")]
            arrays = []
            for p in paths:
                arr, affine, spacing = V.load_volume(p)
                arrays.append(V.as_channels_first(arr, p))
            raw = np.concatenate(arrays).astype(np.float32)
            stem = V.split_ext(paths[0])[0] or paths[0].stem
        else:
            image, affine = self.sample_volume(net)
            raw, spacing, stem = image.numpy(), tuple(np.abs(np.diag(affine)[:3])), "sample"
        if raw.shape[0] != net.in_chans:
            raise ValueError(f"{inputs}: {raw.shape[0]} channel(s), the model expects {net.in_chans}")
        try:  # the card's orientation and spacing (zoo.transforms); a model without a card takes the grid as it is
            from zoo.transforms import transforms

            t = transforms(net)
        except (KeyError, ValueError):
            t = None
        if t is not None and net.num_classes < 256:
            import nibabel as nib

            img = nib.Nifti1Image(np.moveaxis(raw, 0, -1) if len(raw) > 1 else raw[0], affine)
            labels = np.asarray(t.to_input_grid(net.segment(t(img)[0], return_probs=True), img).dataobj)
        else:
            probs = net.segment(V.normalise_intensity(torch.from_numpy(raw)), return_probs=True)
            labels = probs.argmax(0).numpy().astype(np.uint8 if net.num_classes < 256 else np.int32)
        seg = V.save_nifti(out_dir / f"{stem}_seg.nii.gz", labels, affine)
        png = draw_slices(V.normalise_intensity(torch.from_numpy(raw))[0].numpy(), labels,
                          out_dir / f"{stem}_slices.png", self._names(net), spacing=spacing, title=stem,
                          axis_names=view_names(affine))
        return [seg, png]


def view_names(affine: np.ndarray | None) -> tuple[str, str, str]:
    """Names of the slices across array axes 0, 1, 2 ("sagittal", "coronal", "axial") from a NIfTI affine.

    Generic names ("axis 0", ...) when there is no geometry (identity affine: .npy files, generated volumes).
    """
    if affine is None or np.allclose(affine, np.eye(4)):
        return ("axis 0", "axis 1", "axis 2")
    nib = require("nibabel", "medical")

    kind = {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}
    codes = nib.aff2axcodes(affine)  # None for an axis a degenerate affine does not orient
    return tuple(kind.get(c, f"axis {i}") for i, c in enumerate(codes))  # type: ignore[return-value]


def draw_slices(image: np.ndarray, labels: np.ndarray, path: Path, names: list[str], *,
                spacing=(1.0, 1.0, 1.0), title: str = "", centre=None,
                axis_names: tuple[str, str, str] = ("axis 0", "axis 1", "axis 2")) -> Path:
    """Three orthogonal slices through `centre` (default: the centre of the foreground), labels overlaid.

    Each panel is the slice across one array axis; its rows are the later remaining axis drawn
    bottom-up (superior / anterior on top for RAS volumes such as MNI152).
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = pyplot()

    if centre is None:
        fg = np.argwhere(labels > 0)
        centre = fg.mean(0).round().astype(int) if len(fg) else np.array(labels.shape) // 2
    colours = plt.get_cmap("tab10")(np.arange(1, len(names)) % 10)
    cmap = ListedColormap(colours)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    views = [(axis_names[0], 0, (1, 2)), (axis_names[1], 1, (0, 2)), (axis_names[2], 2, (0, 1))]
    for ax, (name, axis, (r, c)) in zip(axes, views):
        # rows: the later axis, drawn bottom-up (superior / anterior on top for RAS volumes)
        img = np.take(image, centre[axis], axis=axis).T
        lab = np.take(labels, centre[axis], axis=axis).T
        aspect = spacing[c] / spacing[r]
        ax.imshow(img, cmap="gray", origin="lower", aspect=aspect)
        over = np.ma.masked_where(lab == 0, lab - 1)
        ax.imshow(over, cmap=cmap, vmin=0, vmax=max(1, len(names) - 2), alpha=0.45, origin="lower",
                  aspect=aspect, interpolation="nearest")
        ax.set_title(f"{name} (axis {axis} = {centre[axis]})" if not name.startswith("axis") else
                     f"{name} = {centre[axis]}")
        ax.axis("off")
    fig.legend(handles=[Patch(color=colours[i], label=n) for i, n in enumerate(names[1:])], loc="lower center",
               ncol=len(names) - 1, frameon=False)
    fig.suptitle(title)
    return save(fig, path, dpi=80, rect=(0, 0.06, 1, 1))


TASK = VolumeSegmentation()
