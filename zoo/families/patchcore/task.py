"""Anomaly detection: fit a memory bank on normal images, then score images and pixels (PatchCore).

Data sources (recipe `data.source`):
  mvtec          an MVTec AD category folder (`data.root`), also the format for your own data:
                 train/good, test/good, test/<defect>, ground_truth/<defect>/<stem>_mask.png.
  textures       the offline benchmark: crops of a real scikit-image texture (`data.texture`: brick,
                 grass, gravel) with planted scratches, holes, colour spots and cut-paste patches,
                 written once in the MVTec layout under `data.root` (default ~/.cache/zoo/anomaly_textures).
  heldout        held-out evaluation: the same benchmark's normal training crops, but test crops with six
                 defect kinds the benchmark never plants (`zoo.families.patchcore.heldout`); also
                 `zoo eval patchcore.<texture> --data heldout`.
  fashion_mnist  one class (`data.normal_class`) normal, the nine others anomalous; image level only.

An MVTec folder may hold normal images only (ROOT/train/good alone, or images directly in ROOT, as
anomalib's Folder data accepts): the detector is fitted and the metrics are whatever the data allows
(see `evaluate`).

Fitting is one pass, not a training loop: features of every normal training image (less a held-out
share, `data.val_fraction`) are extracted, the coreset becomes the memory bank, and the held-out
normal images choose the thresholds: the `data.threshold_quantile` quantile of their image scores
(1.0 = their maximum, so no held-out normal image is flagged) and of their anomaly maps' maxima
(for the pixel masks). The thresholds live in the model's buffers and in the card (`threshold`).

Metrics: image_auroc (image score vs label), pixel_auroc (every pixel of every test image vs the
masks, sklearn's exact roc_auc_score), image_f1 at the held-out threshold, and the two thresholds;
with more than one defect kind also `image_auroc/<kind>` and `pixel_auroc/<kind>` (that kind's images
against the normal ones). Without both normal and anomalous images there is no AUROC: the metrics are
then the share of normal images flagged (`normal_flagged`) and of anomalous ones caught
(`anomalous_detected`) at the thresholds.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from zoo.engine import sequential_batches
from zoo.engine.loop import Loop
from zoo.families.patchcore import data as A
from zoo.recipes import OPT_STR
from zoo.recipes import F as Field
from zoo.specs import AnomalyThreshold
from zoo.tasks.base import Data, Task, unwrap

SOURCES = ("mvtec", "textures", "heldout", "fashion_mnist")
OPT_INT = (int, type(None))


def _batch_size(ctx) -> int:
    train = ctx.recipe["train"] if ctx is not None else {}
    return train.get("eval_batch_size") or train.get("batch_size") or 16


class AnomalyDetection(Task):
    name = "anomaly_detection"
    main_metric = "image_auroc"
    mode = "max"
    DATA_SCHEMA = {
        "source": Field(str, "mvtec", "mvtec | textures | heldout | fashion_mnist"),
        "root": Field(OPT_STR, None, "mvtec: the category folder; textures: the benchmark cache's parent; "
                                     "fashion_mnist: the folder of the IDX files"),
        "texture": Field(str, "brick", "textures, heldout: brick | grass | gravel"),
        "normal_class": Field(int, 0, "fashion_mnist: the normal class, 0-9"),
        "image_size": Field(OPT_INT, 224, "images are resized to this side when read (null keeps their size)"),
        "n_train": Field(OPT_INT, None, "normal training images: generated (textures, default 100) or at most"),
        "n_test": Field(OPT_INT, None, "test images per folder (textures: generated, default 15); fashion_mnist: "
                                       "normal ones and as many anomalous ones"),
        "val_fraction": Field(float, 0.1, "share of the normal training images held out to choose thresholds"),
        "threshold_quantile": Field(float, 1.0, "quantile of the held-out normal scores used as threshold"),
        "seed": Field(int, 0, "generator, hold-out and Fashion-MNIST draws"),
    }
    # a handful of images: the smoke test fits and evaluates every recipe in seconds
    smoke_overrides = ("data.n_train=6", "data.n_test=2", "train.batch_size=4")
    smoke_loss_decreases = False  # nothing is trained by a loss
    # one pass over the data, no optimiser: of the engine's sections only these train keys mean anything here
    ENGINE_KEYS = {"train": ("batch_size", "eval_batch_size", "seed", "deterministic", "device", "threads"),
                   "optim": (), "schedule": ()}

    # ----------------------------------------------------------------- data
    def build_data(self, cfg: dict, ctx) -> Data:
        source = cfg["source"]
        if source not in SOURCES:
            raise ValueError(f"data.source: expected one of {', '.join(SOURCES)}, got {source!r}")
        if not 0 < cfg["val_fraction"] < 1:
            raise ValueError(f"data.val_fraction: expected a fraction in (0, 1), got {cfg['val_fraction']}")
        if not 0 < cfg["threshold_quantile"] <= 1:
            raise ValueError(f"data.threshold_quantile: expected (0, 1], got {cfg['threshold_quantile']}")
        if source == "mvtec":
            if not cfg["root"]:
                raise ValueError("data.root: give the MVTec AD category folder (train/good, test/<defect>, "
                                 "ground_truth/<defect>)")
            train, test = A.read_mvtec(cfg["root"], cfg["image_size"], cfg["n_train"], cfg["n_test"])
            described = f"MVTec AD layout at {cfg['root']}"
        elif source in ("textures", "heldout"):
            size, n_test = cfg["image_size"] or 224, cfg["n_test"] or 15
            root = A.make_texture_benchmark(cfg["texture"], cfg["root"], n_train=cfg["n_train"] or 100,
                                            n_test=n_test, image_size=size, seed=cfg["seed"])
            train, test = A.read_mvtec(root, cfg["image_size"])
            described = f"texture benchmark {root.name} (skimage.data.{cfg['texture']}, planted defects)"
            if source == "heldout":  # same normal crops to fit on; the test defects from the other generator
                from zoo.families.patchcore.heldout import make_heldout_benchmark

                root = make_heldout_benchmark(cfg["texture"], cfg["root"], n_test=n_test, image_size=size,
                                              seed=cfg["seed"])
                test = A.read_mvtec(root, cfg["image_size"], n_train=1)[1]
                described = f"held-out defects {root.name} (zoo.data.defects_heldout)"
        else:
            train, test = A.read_fashion_mnist_oneclass(cfg["normal_class"], cfg["root"], n_train=cfg["n_train"],
                                                        n_test=cfg["n_test"], seed=cfg["seed"])
            described = f"Fashion-MNIST, normal class {cfg['normal_class']} ({A.FASHION_LABELS[cfg['normal_class']]})"
        if len(train) < 2:
            raise ValueError(f"{described}: {len(train)} normal training image(s); need at least 2 "
                             "(some are held out to choose the threshold)")
        n_val = max(1, round(cfg["val_fraction"] * len(train)))
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(cfg["seed"]))
        fit, val = train.subset(order[n_val:].sort().values), train.subset(order[:n_val].sort().values)
        h, w = train.images.shape[-2:]
        info = {"input_spec": {"channels": 3, "size": [int(h), int(w)], "range": [0, 1],
                               "layout": "(B, 3, H, W) float in [0, 1]; resized and normalised inside"},
                "labels": ["normal", "anomalous"], "described": described,
                "threshold_quantile": cfg["threshold_quantile"]}
        return Data(train=fit, val=val, test=test, info=info)

    def card_extras(self, data: Data) -> dict:
        return super().card_extras(data)  # input_spec, labels, and the thresholds (an AnomalyThreshold)

    def finetune_overrides(self, data_path: str) -> list[str]:
        """`--data FOLDER` (MVTec layout or normal images only); `--data heldout` (no such folder here): the
        held-out defect generator on the card's texture (`zoo eval patchcore.gravel --data heldout`)."""
        if data_path == "heldout" and not Path(data_path).exists():
            return ["data.source=heldout"]
        return ["data.source=mvtec", f"data.root={data_path}"]

    # ----------------------------------------------------------------- fitting
    def fit(self, model, data: Data, ctx) -> dict:
        """One step, run by the engine's `Loop` (resume, checkpoint, log): features of the normal images ->
        coreset memory bank -> thresholds from the held-out normals."""
        net = unwrap(model).to(ctx.device).eval()
        loop = Loop(ctx, total=1, unit="memory bank", progress_bar=False, position={"stats": {}})
        ckpt = loop.restore()
        if ckpt is not None:  # resumed: the bank was already built
            net.set_memory_bank(ckpt["memory_bank"])
            net.image_threshold.fill_(ckpt["image_threshold"])
            net.pixel_threshold.fill_(ckpt["pixel_threshold"])
        quantile = data.info.get("threshold_quantile", 1.0)

        def step() -> int:
            start = time.monotonic()
            bs = ctx.recipe["train"]["batch_size"]
            bar = ctx.trainer.progress(math.ceil(len(data.train) / bs), desc="features")
            feats = []
            with torch.no_grad():
                for batch in sequential_batches(data.train, bs, ctx.device):
                    feats.append(net.embed(batch["image"])[0].flatten(0, 1))
                    bar.update(1)
            bar.close()
            feats = torch.cat(feats)
            t_extract = time.monotonic() - start
            net.build_memory_bank(feats, seed=ctx.recipe["train"]["seed"])
            t_coreset = time.monotonic() - start - t_extract
            scores, peaks, _ = self._scores(net, data.val, ctx)
            net.image_threshold.fill_(float(np.quantile(scores, quantile)))
            net.pixel_threshold.fill_(float(np.quantile(peaks, quantile)))
            loop.pos["stats"] = {"patches": len(feats), "memory_size": net.memory_size, "extract_seconds": t_extract,
                                 "coreset_seconds": t_coreset, "held_out_normals": len(data.val)}
            return 1

        def state() -> dict:
            return {"memory_bank": net.memory_bank.cpu(), "image_threshold": float(net.image_threshold),
                    "pixel_threshold": float(net.pixel_threshold)}

        info = loop.run(step, state=state)
        stats = loop.pos["stats"]
        data.fitted = AnomalyThreshold(image=float(net.image_threshold), pixel=float(net.pixel_threshold),
                                       quantile=quantile, held_out_normals=len(data.val))
        ctx.trainer.log({"step": 1, **stats, "image_threshold": data.fitted.image,
                         "pixel_threshold": data.fitted.pixel, "fit_seconds": info["train_seconds"]})
        return {**info, **stats}

    @staticmethod
    def _scores(net, dataset, ctx, keep_maps: bool = False):
        """(image scores, map maxima, maps or None) as numpy arrays."""
        scores, peaks, maps = [], [], []
        with torch.no_grad():
            for batch in sequential_batches(dataset, _batch_size(ctx), ctx.device if ctx else "cpu"):
                out = net(batch["image"])
                scores.append(out["score"].float().cpu())
                peaks.append(out["anomaly_map"].flatten(1).amax(1).float().cpu())
                if keep_maps:
                    maps.append(out["anomaly_map"].float().cpu())
        return torch.cat(scores).numpy(), torch.cat(peaks).numpy(), torch.cat(maps).numpy() if keep_maps else None

    # ----------------------------------------------------------------- evaluation
    def evaluate(self, model, dataset, ctx) -> dict[str, float]:
        """AUROCs (overall and per defect kind) where the data has both classes, else rates at the thresholds."""
        from sklearn.metrics import f1_score

        net = unwrap(model)
        labels = dataset.labels.numpy()
        masks = dataset.masks.numpy().astype(bool) if dataset.masks is not None else None
        scores, _, maps = self._scores(net, dataset, ctx, keep_maps=masks is not None)
        metrics = _aurocs(labels, scores, masks, maps)
        kinds = sorted({k for k, y in zip(dataset.kinds, labels) if y == 1})
        if len(kinds) > 1:
            for kind in kinds:
                pick = np.array([y == 0 or k == kind for k, y in zip(dataset.kinds, labels)])
                part = _aurocs(labels[pick], scores[pick], masks[pick] if masks is not None else None,
                               maps[pick] if maps is not None else None)
                metrics.update({f"{key}/{kind}": v for key, v in part.items()})
        image_t, pixel_t = float(net.image_threshold), float(net.pixel_threshold)
        if math.isfinite(image_t):
            if "image_auroc" in metrics:
                metrics["image_f1"] = float(f1_score(labels, scores > image_t))
            else:  # one class only: what the thresholds do to it is all the data can tell
                for name, y in (("normal_flagged", 0), ("anomalous_detected", 1)):
                    if (labels == y).any():
                        metrics[name] = float((scores[labels == y] > image_t).mean())
            metrics["image_threshold"] = image_t
            metrics["pixel_threshold"] = pixel_t
        return metrics

    # ----------------------------------------------------------------- use
    def sample_input(self, model) -> tuple:
        image, _ = A.texture_sample(self._texture_of(model), "scratch")
        return (torch.from_numpy(image).permute(2, 0, 1)[None].contiguous(),)

    @staticmethod
    def _texture_of(model) -> str:
        tag = (getattr(model, "pretrained_cfg", {}) or {}).get("tag") or ""
        short = tag.split(".", 1)[-1]
        return short if short in A.TEXTURES else "brick"

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        """Score images; write per image `<name>_predict.png` (input, heatmap, ground truth when known,
        score and verdict), `<name>_heatmap.png` (the bare overlay at the input's size), `<name>_mask.png`
        (the predicted defect mask) and scores.json.

        `inputs`: an image file or a folder of images (any size; the map comes back at that size),
        nothing for one generated sample of each planted defect (and a normal crop) of the model's
        texture, or "heldout" for one sample of each held-out defect kind (`zoo.families.patchcore.heldout`).
        Ground truth is drawn for generated samples and for files in an MVTec layout (ROOT/test/<kind>/
        <stem>.* with ROOT/ground_truth/<kind>/<stem>_mask.png).
        """
        from PIL import Image

        net = unwrap(model).eval()
        if not math.isfinite(float(net.pixel_threshold)):
            raise ValueError("patchcore has no fitted memory bank and thresholds: fit it first "
                             "(zoo train / zoo finetune patchcore --data FOLDER_OF_NORMAL_IMAGES)")
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if not inputs or (inputs == "heldout" and not Path(inputs).exists()):
            items = [(name, *sample) for name, sample in _samples(self._texture_of(model), bool(inputs))]
        else:
            src = Path(inputs)
            files = A.image_files(src) if src.is_dir() else [src]
            if not files or not all(f.is_file() for f in files):
                raise ValueError(f"predict: {src} is not an image file or a folder of images "
                                 f"({', '.join(A.IMAGE_EXTS)})")
            items = []
            for f in files:
                with Image.open(f) as im:
                    items.append((f.stem, np.asarray(im.convert("RGB"), np.float32) / 255.0, _ground_truth(f)))
        paths, report = [], {}
        for name, image, truth in items:
            result = score_image(net, image)
            Image.fromarray(panel(image, result, truth)).save(out_dir / f"{name}_predict.png")
            Image.fromarray(overlay(image, result["map"], result["pixel_threshold"], result["mask"])).save(
                out_dir / f"{name}_heatmap.png")
            Image.fromarray(result["mask"].astype(np.uint8) * 255).save(out_dir / f"{name}_mask.png")
            paths += [out_dir / f"{name}_{suffix}.png" for suffix in ("predict", "heatmap", "mask")]
            report[name] = {"score": result["score"], "anomalous": result["anomalous"],
                            "defect_pixels": int(result["mask"].sum())}
        (out_dir / "scores.json").write_text(json.dumps({"image_threshold": float(net.image_threshold),
                                                         "pixel_threshold": float(net.pixel_threshold),
                                                         "images": report}, indent=2) + "\n")
        return paths + [out_dir / "scores.json"]

    def draw_sample(self, model, out_path: Path, heldout: bool = False) -> Path:
        """Each planted defect (or held-out kind) on the model's texture: input, heatmap and ground truth,
        with score and verdict, side by side."""
        from PIL import Image

        net = unwrap(model).eval()
        tiles = [panel(image, score_image(net, image), truth, vertical=True)
                 for _, (image, truth) in _samples(self._texture_of(model), heldout) if _ != "good"]
        Image.fromarray(np.concatenate(tiles, 1)).save(out_path)
        return Path(out_path)


def _samples(texture: str, heldout: bool) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """(name, (image, mask)): one generated crop per benchmark defect and a normal one, or per held-out kind."""
    if heldout:
        from zoo.families.patchcore.heldout import HELDOUT_DEFECTS, heldout_sample

        return [(f"{texture}_{kind}", heldout_sample(texture, kind)) for kind in HELDOUT_DEFECTS]
    return [(f"{texture}_{kind}", A.texture_sample(texture, kind)) for kind in (*A.DEFECTS, "good")]


def _ground_truth(path: Path) -> np.ndarray | None:
    """The MVTec mask of ROOT/test/<kind>/<stem>.* (zeros for test/good), or None outside that layout."""
    kind, test = path.parent.name, path.parent.parent
    if test.name != "test":
        return None
    mask = test.parent / "ground_truth" / kind / f"{path.stem}_mask.png"
    if kind == "good" or not mask.is_file():
        return None if kind != "good" else np.zeros(A._header_size(path)[::-1], bool)
    return A._load_mask(mask, None).astype(bool)


def score_image(net, image: np.ndarray) -> dict:
    """One (H, W, 3) image in [0, 1] through a fitted detector: score, verdict, map, mask, thresholds."""
    device = next(iter(net.buffers())).device
    with torch.no_grad():
        out = net(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device))
    amap = out["anomaly_map"][0].float().cpu().numpy()
    image_t, pixel_t = float(net.image_threshold), float(net.pixel_threshold)
    pixel_t = pixel_t if math.isfinite(pixel_t) else float(amap.max())
    score = float(out["score"][0])
    return {"score": score, "anomalous": score > image_t, "map": amap, "mask": amap > pixel_t,
            "image_threshold": image_t, "pixel_threshold": pixel_t}


def panel(image: np.ndarray, result: dict, truth: np.ndarray | None = None, *, vertical: bool = False) -> np.ndarray:
    """A picture for a person: input | heatmap (predicted defect outlined) | ground truth (when given),
    over a caption with the score, the threshold and the verdict (red ANOMALOUS, green normal).

    Small images are enlarged (nearest) to at least 224 px a side so the caption fits. (H, W, 3) uint8.
    """
    from PIL import Image, ImageDraw, ImageFont

    tiles = [(image * 255).astype(np.uint8), overlay(image, result["map"], result["pixel_threshold"], result["mask"])]
    labels = ["input", "anomaly map"]
    if truth is not None:
        tiles.append(overlay(image, np.zeros_like(result["map"]), 1.0, truth, colour=(0.1, 1.0, 0.2), heat=False))
        labels.append("ground truth")
    h, w = tiles[0].shape[:2]
    scale = max(1, math.ceil(224 / min(h, w)))
    tiles = [np.asarray(Image.fromarray(t).resize((w * scale, h * scale), Image.NEAREST)) for t in tiles]
    font = ImageFont.load_default(size=14)
    labelled = []
    for tile, label in zip(tiles, labels):
        im = Image.fromarray(tile)
        ImageDraw.Draw(im).text((4, 2), label, fill="white", font=font, stroke_width=2, stroke_fill="black")
        labelled.append(np.asarray(im))
    body = np.concatenate(labelled, 0 if vertical else 1)
    caption = Image.new("RGB", (body.shape[1], 44), "white")
    draw = ImageDraw.Draw(caption)
    verdict, colour = ("ANOMALOUS", (200, 0, 0)) if result["anomalous"] else ("normal", (0, 140, 0))
    draw.text((6, 2), verdict, fill=colour, font=ImageFont.load_default(size=18))
    draw.text((6, 24), f"score {result['score']:.2f}  (threshold {result['image_threshold']:.2f})", fill="black",
              font=font)
    return np.concatenate([body, np.asarray(caption)], 0)


def _aurocs(labels: np.ndarray, scores: np.ndarray, masks: np.ndarray | None, maps: np.ndarray | None) -> dict:
    """image_auroc when both classes are present; pixel_auroc when the masks hold defect and normal pixels."""
    from sklearn.metrics import roc_auc_score

    out = {}
    if len(np.unique(labels)) == 2:
        out["image_auroc"] = float(roc_auc_score(labels, scores))
    if masks is not None and masks.any() and not masks.all():
        out["pixel_auroc"] = float(roc_auc_score(masks.ravel(), maps.ravel()))
    return out


def overlay(image: np.ndarray, amap: np.ndarray, threshold: float, mask: np.ndarray, *,
            colour=(1.0, 1.0, 1.0), heat: bool = True) -> np.ndarray:
    """The image blended with a jet heatmap (threshold at the middle of the scale) and the mask's outline
    in `colour` (white); `heat=False` draws the outline on the plain image.

    Shapes: image (H, W, 3) float in [0, 1]; amap, mask (H, W) -> (H, W, 3) uint8.
    """
    import matplotlib

    out = np.array(image, np.float32)
    if heat:
        level = np.clip(amap / (2 * threshold), 0, 1) if threshold > 0 else np.zeros_like(amap)
        out = 0.5 * out + 0.5 * matplotlib.colormaps["jet"](level)[..., :3]
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    inner = -torch.nn.functional.max_pool2d(-m, 3, 1, 1)  # erosion
    out[(m - inner)[0, 0].numpy() > 0] = colour
    return (np.clip(out, 0, 1) * 255).astype(np.uint8)


TASK = AnomalyDetection()
