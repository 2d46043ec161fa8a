"""Image classification: images (B, C, H, W) and integer labels in, cross-entropy out, accuracy measured.

Data sources (recipe `data.dataset`):
  fashion_mnist  the official 60,000 / 10,000 split (zoo.data.images.fashion_mnist).
  digits         scikit-learn's 8x8 digits with a fixed stratified 50% test split.
  folder         ImageFolder class folders at `data.root`; with train/ (val/, test/) sub-folders those
                 splits are used, otherwise `val_size` of the images is held out, stratified.
  csv            a CSV of path,label rows at `data.root`; `val_size` is held out.

Validation: `data.val_size` of the training images (stratified, fixed `split_seed`) is held out;
the engine evaluates on it and keeps the best checkpoint. The test set, where there is one, is only
used for the final metric. Images stay uint8 in memory (`ImageBatches`, vectorised `get_batch`);
`zoo.augment.ClassificationAugment` turns whole batches into normalised floats on the model's
device: random crop (optionally after padding, torchvision's RandomCrop(padding=...)), flip and
colour jitter in training, plain normalisation for evaluation. The input spec (size, channels,
mean, std) goes into the weight card; starting from pretrained weights keeps their mean/std.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from zoo.data import images as I
from zoo.drawing import pyplot, save
from zoo.engine import sequential_batches
from zoo.recipes import NUM, OPT_STR, PROB
from zoo.recipes import F as Field
from zoo.samples import sample_dir
from zoo.tasks.base import Data, Task, TensorBatches, unwrap

DATASETS = ("fashion_mnist", "digits", "folder", "csv")


class ImageBatches(TensorBatches):
    """(uint8 images (N, C, H, W), int64 labels (N,)) with the input spec that says how to normalise them."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, spec: dict, classes: list[str]):
        super().__init__(images, labels)
        self.spec, self.classes = spec, classes

    @classmethod
    def of(cls, data: I.ImageSet, spec: dict) -> ImageBatches:
        return cls(data.images, data.labels, spec, data.classes)


class TrainTransform:
    """Pad (torchvision's RandomCrop padding), then ClassificationAugment: uint8 batch -> normalised floats.

    With `resize_from`, progressive resizing (as FFCV's ImageNet recipes): the crops are resampled
    to a smaller size early in training, `resize_from` pixels on the shorter side at the start,
    growing in steps of 4 pixels to the full input size at `resize_until` (a share of training);
    a step at 20x20 costs about half one at 28x28, and the last stretch at full size recalibrates
    batch norm to the evaluated size.
    """

    STEP = 4  # pixels: few distinct sizes, each reused for many steps

    def __init__(self, augment, pad: int, resize_from: int | None = None, resize_until: float = 0.75):
        self.augment, self.pad = augment, pad
        self.resize_from, self.resize_until = resize_from, resize_until

    def size_at(self, progress: float) -> tuple[int, int]:
        """(h, w) of the training crops at `progress` in [0, 1] of the run."""
        h, w = self.augment.size
        short = min(h, w)
        if self.resize_from is None or progress >= self.resize_until:
            return h, w
        grown = (short - self.resize_from) * progress / self.resize_until
        side = self.resize_from + self.STEP * int(grown // self.STEP)
        return max(1, round(h * side / short)), max(1, round(w * side / short))

    def __call__(self, images: torch.Tensor, progress: float = 1.0) -> torch.Tensor:
        if self.pad:
            images = F.pad(images, (self.pad,) * 4)
        return self.augment(images, size=self.size_at(progress))


def _adapt_stats(values: list[float], channels: int) -> list[float]:
    # zoo.create's in_chans rule: grey = mean of the colour statistics; more channels repeat them.
    if len(values) == channels:
        return list(values)
    if channels < len(values):
        return [sum(values) / len(values)] * channels
    return (list(values) * channels)[:channels]


def pretrained_input_spec(model_cfg: dict) -> dict | None:
    """The input spec of the weights a recipe starts from (zoo card or timm config), else None."""
    from zoo import registry
    from zoo import weights as W

    name, pretrained = model_cfg["name"], model_cfg["pretrained"]
    if not pretrained:
        return None
    _, slash, inner = name.partition("/")
    if slash and not name.startswith(("hf-hub:", "local-dir:")):
        import timm

        from zoo.families.cnn.model import timm_input_spec

        cfg = timm.models.get_pretrained_cfg(inner)
        return timm_input_spec(cfg.to_dict(), 3) if cfg is not None else None
    if name.startswith("local-dir:"):
        folder = W.resolve(path=name.partition(":")[2])
    elif name.startswith("hf-hub:"):
        repo, _, rev = name.partition(":")[2].partition("@")
        folder = W.resolve(repo_id=repo, revision=rev or None)
    elif isinstance(pretrained, str) and ("/" in pretrained or Path(pretrained).is_dir()):
        folder = W.resolve(path=pretrained)
    else:
        tag = pretrained if isinstance(pretrained, str) else name if "." in name else registry.default_tag_of(name)
        return W.get_card(tag if "." in tag else f"{name}.{tag}").get("input_spec")
    return json.loads((folder / "config.json").read_text()).get("input_spec")


def input_spec_for(train: I.ImageSet, pretrained: dict | None, input_size: list[int] | None = None) -> dict:
    """Size (`input_size`, else the images') and channels from the data; mean/std from the pretrained
    weights, else from the training images."""
    channels, h, w = train.images.shape[1:]
    h, w = input_size or (h, w)
    if pretrained and pretrained.get("mean"):
        mean, std = _adapt_stats(pretrained["mean"], channels), _adapt_stats(pretrained["std"], channels)
        interpolation = pretrained.get("interpolation", "bilinear")
    else:
        x = train.images.float().div_(255).transpose(0, 1).reshape(channels, -1)
        mean = [round(float(v), 4) for v in x.mean(1)]
        std = [round(max(float(v), 1e-3), 4) for v in x.std(1)]
        interpolation = "bilinear"
    return {"size": [int(h), int(w)], "channels": int(channels), "mean": mean, "std": std,
            "interpolation": interpolation}


def load_sets(cfg: dict) -> tuple[I.ImageSet, I.ImageSet | None, I.ImageSet | None]:
    """(train, val, test) ImageSets for a recipe's data section; val is carved from train when needed."""
    kind = cfg["dataset"]
    val = test = None
    if kind == "fashion_mnist":
        train, test = I.fashion_mnist(cfg["root"], download=cfg["download"])
    elif kind == "digits":
        train, test = I.digits_split()
    elif kind in ("folder", "csv"):
        if not cfg["root"]:
            raise ValueError(f"data.root: the {kind} dataset needs a path (data.root=PATH)")
        if kind == "folder":
            splits = I.read_image_folder(cfg["root"], cfg["image_size"], cfg["channels"])
            train = splits.get("train", splits.get("all"))
            val, test = splits.get("val"), splits.get("test")
        else:
            train = I.read_image_csv(cfg["root"], cfg["image_size"], cfg["channels"])
    else:
        raise ValueError(f"data.dataset: unknown dataset {kind!r}; choose one of {', '.join(DATASETS)}")
    if len(set(train.labels.tolist())) < 2:
        where = f"data.root={cfg['root']}" if cfg["root"] else f"data.dataset={kind}"
        found = sorted({train.classes[i] for i in train.labels.tolist()})
        raise ValueError(f"{where}: the training images hold one class ({', '.join(map(repr, found))}); a classifier "
                         "needs at least two, one sub-folder per class (ROOT/<class>/<image>). For normal images "
                         "only, fine-tune an anomaly detector instead: zoo finetune patchcore --data ROOT")
    if cfg["train_limit"] and cfg["train_limit"] < len(train):
        _, subset = I.stratified_split(train.labels, cfg["train_limit"], cfg["split_seed"])
        train = train.subset(subset)
    if val is None and cfg["val_size"]:
        if cfg["val_size"] < 0 or cfg["val_size"] >= len(train) or len(train) < 2:
            raise ValueError(f"data.val_size={cfg['val_size']}: expected a fraction in (0, 1) or a count below the "
                             f"{len(train)} training images")
        keep, held = I.stratified_split(train.labels, cfg["val_size"], cfg["split_seed"])
        train, val = train.subset(keep), train.subset(held)
    counts = torch.bincount(train.labels, minlength=len(train.classes))
    if (counts == 0).any():
        empty = [train.classes[i] for i in torch.nonzero(counts == 0).flatten().tolist()]
        raise ValueError(f"data: classes {empty} have no training images after the validation split")
    return train, val, test


class ClassificationTask(Task):
    name = "classification"
    main_metric = "accuracy"
    mode = "max"
    smoke_overrides = ("train.max_steps=4", "train.log_every=1", "data.train_limit=256", "data.val_size=64")
    DATA_SCHEMA = {
        "dataset": Field(str, "folder", "fashion_mnist | digits | folder | csv"),
        "root": Field(OPT_STR, None, "folder or CSV for folder/csv; idx files for fashion_mnist (default: found)"),
        "val_size": Field(NUM, 0.1, "held out of train for checkpoint selection: a fraction, a count, or 0", ge=0),
        "split_seed": Field(int, 0, "seed of the stratified validation split and of train_limit"),
        "train_limit": Field((int, type(None)), None, "use a stratified subset of this many training images", ge=1),
        "image_size": Field((list, type(None)), None, "[H, W]: resize folder/CSV images when they are read"),
        "input_size": Field((list, type(None)), None, "[H, W] the model sees, resized per batch (default: image size)"),
        "channels": Field((int, type(None)), None, "1 or 3: force grey or RGB (default: from the images)", ge=1),
        "download": Field(bool, True, "fashion_mnist: let torchvision download it when no local copy exists"),
    }
    AUGMENT_SCHEMA = {
        "enabled": Field(bool, True),
        "pad": Field(int, 0, "pad each side by this many pixels before the crop (random translation)", ge=0),
        "scale": Field(list, [1.0, 1.0], "range of the crop's area, as a fraction of the unpadded image"),
        "ratio": Field(list, [1.0, 1.0], "range of the crop's aspect ratio, relative to the image's"),
        "hflip": Field(bool, True, "mirror half of the images (off for digits and text)"),
        "color_jitter": Field((int, float, list), 0.0, "brightness/contrast/saturation(/hue); RGB only"),
        "label_smoothing": Field(NUM, 0.0, "cross-entropy label smoothing", ge=0, lt=1),
        "resize_from": Field((int, type(None)), None,
                             "progressive resizing: train at this many pixels (shorter side) at the start"),
        "resize_until": Field(NUM, 0.75, "share of training at which progressive resizing reaches the full size",
                              **PROB),
        "tta": Field(list, [], "test-time augmentation for evaluation and predict: [flip], [shift] or both "
                               "(softmax averaged over the views); stored in the card's input_spec"),
    }

    # ----------------------------------------------------------------- data and model
    def build_data(self, cfg: dict, ctx) -> Data:
        for key in ("image_size", "input_size"):
            size = cfg[key]
            if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
                raise ValueError(f"data.{key} must be [H, W] with positive ints, got {size}")
        train, val, test = load_sets(cfg)
        spec = input_spec_for(train, pretrained_input_spec(ctx.recipe["model"]), cfg["input_size"])
        tta = ctx.recipe["augment"]["tta"]
        if tta:
            from zoo.augment.classification import TTA_KINDS

            if not set(tta) <= set(TTA_KINDS):
                raise ValueError(f"augment.tta={tta}: each entry must be one of {', '.join(TTA_KINDS)}")
            spec["tta"] = list(tta)  # in the card: zoo eval and predict average the same views
        wrap = {name: ImageBatches.of(s, spec) if s is not None else None
                for name, s in (("train", train), ("val", val), ("test", test))}
        info = {"num_classes": len(train.classes), "in_chans": spec["channels"], "labels": list(train.classes),
                "input_spec": spec, "sizes": {k: len(v) for k, v in wrap.items() if v is not None}}
        return Data(wrap["train"], wrap["val"], wrap["test"], info)

    def model_args(self, data: Data) -> dict:
        return {"num_classes": data.info["num_classes"], "in_chans": data.info["in_chans"]}

    def card_extras(self, data: Data) -> dict:
        return {k: data.info[k] for k in ("input_spec", "labels") if k in data.info}

    def build_augment(self, cfg: dict, data: Data, device):
        from zoo.augment import ClassificationAugment

        spec = data.info["input_spec"]
        if not cfg["enabled"]:
            return TrainTransform(ClassificationAugment.from_spec(spec, train=False).to(device), 0)
        for key in ("scale", "ratio"):
            lo, hi = cfg[key] if len(cfg[key]) == 2 else (0, -1)
            if not 0 < lo <= hi:
                raise ValueError(f"augment.{key} must be [low, high] with 0 < low <= high, got {cfg[key]}")
        if cfg["pad"] < 0:
            raise ValueError(f"augment.pad must be >= 0, got {cfg['pad']}")
        short = min(spec["size"])
        if cfg["resize_from"] is not None and not 0 < cfg["resize_from"] < short:
            raise ValueError(f"augment.resize_from={cfg['resize_from']} must be between 1 and the input size's "
                             f"shorter side ({short} px) minus 1")
        if not 0 < cfg["resize_until"] <= 1:
            raise ValueError(f"augment.resize_until={cfg['resize_until']} must be a share of training in (0, 1]")
        (h, w), p = data.train.tensors[0].shape[-2:], cfg["pad"]
        # ClassificationAugment measures area against the (padded) input and aspect in absolute
        # terms; the recipe's values are relative to the unpadded image, so scale=[1, 1] with pad=2
        # crops exactly H x W at a random offset (a pure translation, as RandomCrop(padding=2)),
        # then resizes it to the spec's size.
        area = h * w / ((h + 2 * p) * (w + 2 * p))
        augment = ClassificationAugment.from_spec(
            spec, train=True, scale=tuple(s * area for s in cfg["scale"]),
            ratio=tuple(r * w / h for r in cfg["ratio"]), hflip=cfg["hflip"], color_jitter=cfg["color_jitter"])
        return TrainTransform(augment.to(device), p, cfg["resize_from"], cfg["resize_until"])

    # ----------------------------------------------------------------- training
    def train_step(self, model, batch, ctx):
        images, labels = batch
        images = ctx.augment(images, ctx.progress)
        logits = model(images)
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=ctx.recipe["augment"]["label_smoothing"])
        if ctx.extra.get("teacher"):  # train.distill.teacher: Hinton's KL(T) T^2 + CE
            from zoo.deploy.distill import distill_loss

            loss = distill_loss(logits, images, loss, ctx.extra["teacher"])
        return loss, {}

    def _eval_transform(self, spec: dict, device):
        from zoo.augment import ClassificationAugment

        return ClassificationAugment.from_spec(spec, train=False).to(device)

    def predictions(self, model, dataset: ImageBatches, ctx=None, batch_size: int = 500,
                    single_view: bool = False):
        """(probabilities (N, K), labels (N,)) of `model` on a whole ImageBatches, in order.

        Where the input spec names test-time augmentation ("tta"), the probabilities are the mean
        over its views; `single_view=True` also returns those of the plain images, as a third item.
        """
        from zoo.augment.classification import tta_views

        device = ctx.device if ctx is not None else next(model.parameters()).device
        if ctx is not None:
            batch_size = ctx.recipe["train"]["eval_batch_size"] or batch_size
        transform = self._eval_transform(dataset.spec, device)
        kinds = dataset.spec.get("tta") or []
        probs, plain, labels = [], [], []
        for images, y in sequential_batches(dataset, batch_size, device):
            views = [model(transform(view)).float().softmax(1) for view in tta_views(images, kinds)]
            probs.append((sum(views) / len(views)).cpu())
            plain.append(views[0].cpu())
            labels.append(y.cpu())
        out = torch.cat(probs), torch.cat(labels)
        return out + (torch.cat(plain),) if single_view else out

    def _scored(self, model, dataset: ImageBatches, ctx=None) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """(metrics, probabilities, labels); with test-time augmentation the metrics add `accuracy_single_view`."""
        probs, labels, plain = self.predictions(model, dataset, ctx, single_view=True)
        metrics = classification_metrics(probs, labels)
        if dataset.spec.get("tta"):
            metrics["accuracy_single_view"] = classification_metrics(plain, labels)["accuracy"]
        return metrics, probs, labels

    def evaluate(self, model, dataset, ctx) -> dict[str, float]:
        """accuracy, top-5 accuracy (more than 5 classes), mean per-class accuracy and cross-entropy;
        with test-time augmentation also `accuracy_single_view` (the plain images alone)."""
        return self._scored(model, dataset, ctx)[0]

    # ----------------------------------------------------------------- use
    def finetune_overrides(self, data_path: str) -> list[str]:
        kind = "csv" if str(data_path).lower().endswith(".csv") else "folder"
        return [f"data.dataset={kind}", f"data.root={data_path}"]


    def write_eval_report(self, model, dataset: ImageBatches, out_dir: Path, ctx=None) -> list[Path]:
        """metrics.json and confusion.png for a labelled data set (the pictures `zoo eval --out` would write)."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        with torch.no_grad():
            metrics, probs, labels = self._scored(model.eval(), dataset, ctx)
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        matrix = confusion_matrix(probs.argmax(1), labels, len(dataset.classes))
        picture = draw_confusion(matrix, dataset.classes, out_dir / "confusion.png",
                                 title=f"{len(labels)} images, accuracy {metrics['accuracy']:.4f}")
        return [out_dir / "metrics.json", picture]

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None, top_k: int = 3,
                grid: int = 32) -> list[Path]:
        """Classify images and draw them with their top-k labels and probabilities.

        `inputs`: an image file, a folder of images, ImageFolder class folders or a path,label CSV
        (labelled inputs also get confusion.png and metrics.json), or nothing for the test set of the
        data the weights were trained on (read from the weights folder's recipe.yaml).
        Writes predictions.png (the first `grid` images) and predictions.csv (every image).
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        net = unwrap(model).eval()
        dataset, files = self.prediction_inputs(net, inputs)
        with torch.no_grad():
            probs, labels = self.predictions(net, dataset)
        labelled = bool((labels >= 0).all())
        k = min(top_k, probs.shape[1])
        top_p, top_i = probs.topk(k, dim=1)
        names = dataset.classes
        table = out_dir / "predictions.csv"
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "label"] + [c for j in range(k) for c in (f"top{j + 1}", f"p{j + 1}")])
            for n in range(len(probs)):
                row = [files[n], names[labels[n]] if labels[n] >= 0 else ""]
                writer.writerow(row + [c for j in range(k) for c in (names[top_i[n, j]], f"{float(top_p[n, j]):.4f}")])
        # wrong guesses first (stable: in input order), then the rest
        order = torch.argsort(((labels >= 0) & (top_i[:, 0] != labels)).int(), descending=True, stable=True)[:grid]
        paths = [draw_predictions(dataset.tensors[0][order], top_i[order], top_p[order], labels[order], names,
                                  out_dir / "predictions.png", total=len(probs)), table]
        if labelled:
            paths += self.write_eval_report(net, dataset, out_dir)
        return paths

    def prediction_inputs(self, model, inputs: str | None) -> tuple[ImageBatches, list[str]]:
        """(ImageBatches at the model's input spec, a name per image); label -1 where unknown."""
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        spec = cfg.get("input_spec") or {}
        if not {"size", "mean", "std"} <= set(spec):
            raise ValueError(f"{cfg.get('tag') or type(model).__name__}: its input_spec {spec} lacks size/mean/std; "
                             "predict needs them to prepare images")
        classes = cfg.get("labels") or [f"class{i}" for i in range(_num_classes(model))]
        shipped = sample_dir(model)
        if inputs is None and shipped is not None and (shipped / "samples.csv").is_file():
            inputs = str(shipped / "samples.csv")  # the test images the weights folder ships
        if inputs is None:
            source = Path(cfg.get("source") or "")
            recipe = source / "recipe.yaml"
            if not recipe.is_file():
                raise ValueError("predict needs an INPUT (image, folder or CSV) for a model without a weights "
                                 "folder recipe to take sample images from")
            import yaml

            data_cfg = {**{k: f[1] for k, f in self.DATA_SCHEMA.items()}, **yaml.safe_load(recipe.read_text())["data"]}
            train, val, test = load_sets(data_cfg)
            chosen = test if test is not None else val if val is not None else train
            return ImageBatches(chosen.images, chosen.labels, spec, classes), [str(i) for i in range(len(chosen))]
        path = Path(inputs).expanduser()
        size, chans = list(spec["size"]), spec.get("channels", len(spec["mean"]))
        if path.is_file() and path.suffix.lower() == ".csv":
            data = I.read_image_csv(path, size, chans)
        elif path.is_dir() and any(p.is_dir() for p in path.iterdir()):
            splits = I.read_image_folder(path, size, chans)
            data = next(splits[s] for s in ("test", "val", "all", "train") if s in splits)
        elif path.is_dir() or path.is_file():
            files = [path] if path.is_file() else sorted(
                p for p in path.iterdir() if p.suffix.lower() in I.IMAGE_EXTENSIONS)
            if not files:
                raise ValueError(f"{path}: no images ({', '.join(I.IMAGE_EXTENSIONS)})")
            images = I.open_images(files, size, chans)
            data = I.ImageSet(images, torch.full((len(files),), -1), classes, [str(f) for f in files])
        else:
            raise ValueError(f"predict input {path} does not exist")
        if data.classes is not classes:
            unknown = [c for c in data.classes if c not in classes]
            if unknown:
                raise ValueError(f"{path}: classes {unknown} are not among the model's labels {classes}")
            remap = torch.tensor([classes.index(c) for c in data.classes])
            data = I.ImageSet(data.images, remap[data.labels], classes, data.files)
        return ImageBatches(data.images, data.labels, spec, classes), list(data.files or range(len(data)))

    def sample_input(self, model) -> tuple:
        """The first test images of the weights' own data set, normalised (else random inputs)."""
        try:
            dataset, _ = self.prediction_inputs(unwrap(model), None)
        except (ValueError, OSError):
            return model.example_inputs(1)
        return (self._eval_transform(dataset.spec, torch.device("cpu"))(dataset.tensors[0][:1]),)

    def draw_sample(self, model, out_path: Path) -> Path | None:
        out_path = Path(out_path)
        try:
            paths = self.predict(model, None, out_path.parent / f"{out_path.stem}_predict", grid=16)
        except (ValueError, OSError):
            return None
        out_path.write_bytes(paths[0].read_bytes())
        return out_path


def _num_classes(model) -> int:
    head = getattr(model, "num_classes", None)
    if isinstance(head, int):
        return head
    raise ValueError(f"{type(model).__name__}: cannot tell the number of classes (no labels in its card)")


# --------------------------------------------------------------------------- metrics and pictures


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """accuracy, top5 (more than 5 classes), balanced_accuracy (mean per-class recall), loss (cross-entropy)."""
    k = probs.shape[1]
    pred = probs.argmax(1)
    out = {"accuracy": float((pred == labels).float().mean())}
    if k > 5:
        out["top5"] = float((probs.topk(5, dim=1).indices == labels[:, None]).any(1).float().mean())
    recall = [float((pred[labels == c] == c).float().mean()) for c in range(k) if (labels == c).any()]
    out["balanced_accuracy"] = sum(recall) / len(recall)
    out["loss"] = float(-probs.gather(1, labels[:, None]).clamp_min(1e-12).log().mean())
    return out


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts: row = true class, column = predicted class."""
    return torch.bincount(labels * num_classes + pred, minlength=num_classes**2).view(num_classes, num_classes)


def draw_confusion(matrix: torch.Tensor, classes: list[str], path: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with counts in the cells (for up to 30 classes)."""
    plt = pyplot()
    k = len(classes)
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp_min(1)
    side = max(4.0, 0.55 * k + 2)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if matrix[i, j]:
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    return save(fig, path, dpi=100)


LOW_CONFIDENCE = 0.5  # a top probability below this gets a note under the image


def draw_predictions(images: torch.Tensor, top_i: torch.Tensor, top_p: torch.Tensor, labels: torch.Tensor,
                     classes: list[str], path: Path, cols: int = 8, total: int | None = None) -> Path:
    """A grid of uint8 images, each titled with its top-k labels and probabilities (green/red when the
    true label is known and the top-1 guess is right/wrong; "unsure" when the top probability is below
    LOW_CONFIDENCE). A single image is drawn alone at a readable size. `total`: how many images were
    classified in all (the grid may show only the first ones)."""
    plt = pyplot()
    n = len(images)
    cols = max(1, min(cols, n))
    rows = max(1, math.ceil(n / cols))
    k = top_i.shape[1]
    cell = 3.2 if n == 1 else 1.9  # inches: one image alone is drawn bigger, never on a wide empty canvas
    lines_h = 0.13 * (k + 2)
    fig, axes = plt.subplots(rows, cols, figsize=(max(cell * cols, 2.6), (cell + lines_h) * rows + 0.4),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    wrong = 0
    for n_, ax in enumerate(axes.flat[:n]):
        img = images[n_].permute(1, 2, 0).numpy()
        ax.imshow(img[..., 0] if img.shape[2] == 1 else img, cmap="gray" if img.shape[2] == 1 else None,
                  vmin=0, vmax=255, interpolation="nearest")
        lines = [f"{classes[top_i[n_, j]][:16]} {100 * float(top_p[n_, j]):.0f}%" for j in range(k)]
        colour = "black"
        if labels[n_] >= 0:
            right = bool(top_i[n_, 0] == labels[n_])
            wrong += not right
            colour = "green" if right else "red"
            lines.append(f"(true: {classes[labels[n_]][:16]})")
        if float(top_p[n_, 0]) < LOW_CONFIDENCE:
            lines.append(f"unsure: top-1 below {LOW_CONFIDENCE:.0%}")
        ax.set_title("\n".join(lines), fontsize=8 if n == 1 else 7, color=colour)
    known = int((labels >= 0).sum())
    head = f"{n} of {total} images" if total and total > n else f"{n} image{'s' if n > 1 else ''}"
    if known:
        head += f"; {wrong} wrong of {known} labelled" + (" (shown first)" if wrong and n > 1 else "")
    fig.suptitle(head, fontsize=9)
    return save(fig, path, dpi=90)


TASK = ClassificationTask()
