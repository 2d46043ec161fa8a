"""BEV segmentation from a camera rig: occupancy per class plus object-centre heatmaps.

Data sources (recipe `data.source`):
  synthetic  zoo's procedural world (`zoo.families.bev.data.generate_scenes`): training, validation and test
             scenes from separate seeds, so the test scenes are never seen in training.
  json       your own rig in zoo's JSON layout (`zoo.families.bev.data.read_json`, docs/models/bev.md);
             a fraction of the samples is held out for validation and testing.

Training: `zoo.families.bev.augment.RigAugment` on the batch (rotation / flip / scale of the ego frame: the
extrinsics, the BEV labels and the object centres move together; per-camera colour jitter), then
  loss = BCE + soft Dice per class (Dice over the whole batch) on the occupancy logits
       + the penalty-reduced focal loss of CenterNet (Zhou et al. 2019) on the centre heatmap,
         whose targets are Gaussians (sigma = 1 cell) drawn at the (augmented) box centres
       + cross-entropy of the models' per-pixel depth bins against the data's depth maps, where it
         has them (the generated world does; the JSON layout does not): BEVDepth's depth
         supervision for the Lift-Splat model, BEVFormer v2's perspective supervision for the other.
         Depth along the optical axis does not change under RigAugment (it moves cameras and world together).
Metrics: IoU per class at probability 0.5, with intersections and unions summed over the whole
evaluation set (the usual BEV-segmentation protocol); centre precision / recall / F1 (peaks of
the heatmap above 0.3 matched to true centres within 2 cells); and the baselines that use no
image at all: the best constant map (all cells one class or none) and the per-cell prior of the
training labels thresholded where it maximises training IoU, both measured on the same data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.drawing import pyplot, save
from zoo.engine import sequential_batches
from zoo.families.bev import data as D
from zoo.families.bev.augment import RigAugment
from zoo.recipes import NUM, OPT_STR, fields_from_signature
from zoo.recipes import F as Field
from zoo.tasks.base import Data, Task, TensorBatches, unwrap

# the recipe's augment keys are RigAugment's arguments, with its defaults and docs (bev_range follows the data)
AUGMENT_FIELDS = fields_from_signature(RigAugment, exclude=("bev_range", "label_fill"))
CENTRE_SIGMA_CELLS = 1.0
PEAK_THRESHOLD = 0.3
MATCH_CELLS = 2.0


class Scenes(TensorBatches):
    """Scenes as aligned tensors with a vectorised `get_batch`, plus what evaluation needs to know.

    Attributes: classes (names of classes 1..K), x_range / y_range / grid, and `prior`: the
    per-cell class frequency of the training labels (K, X, Y) with its best thresholds (K,).
    """

    KEYS = ("images", "intrinsics", "cam_to_ego", "labels", "boxes", "depth")

    def __init__(self, data: dict, classes: list[str], x_range, y_range, grid, prior=None):
        super().__init__(*(data[k] for k in self.KEYS), names=self.KEYS)
        self.classes, self.x_range, self.y_range, self.grid = list(classes), tuple(x_range), tuple(y_range), tuple(grid)
        self.prior = prior


# --------------------------------------------------------------------------- targets and losses


def centre_heatmap(boxes: torch.Tensor, x_range, y_range, grid) -> torch.Tensor:
    """(B, 1, X, Y) Gaussian heatmaps (peak 1 at the cell holding each centre) from (B, M, >=3) boxes."""
    b = boxes.shape[0]
    (x0, x1), (y0, y1), (nx, ny) = x_range, y_range, grid
    ci = (boxes[..., 0] - x0) / (x1 - x0) * nx  # continuous cell coordinates of each centre
    cj = (boxes[..., 1] - y0) / (y1 - y0) * ny
    real = boxes[..., 7] > 0
    ii = torch.arange(nx, device=boxes.device, dtype=boxes.dtype) + 0.5
    jj = torch.arange(ny, device=boxes.device, dtype=boxes.dtype) + 0.5
    d2 = (ii.view(1, 1, nx, 1) - ci[..., None, None]) ** 2 + (jj.view(1, 1, 1, ny) - cj[..., None, None]) ** 2
    g = torch.exp(-d2 / (2 * CENTRE_SIGMA_CELLS**2)) * real[..., None, None]
    # The cell that holds a centre is the positive of the focal loss: set it to exactly 1.
    peak = real & (ci >= 0) & (ci < nx) & (cj >= 0) & (cj < ny)
    hit = (ii.view(1, 1, nx, 1).floor() == ci.floor()[..., None, None]) & \
          (jj.view(1, 1, 1, ny).floor() == cj.floor()[..., None, None]) & peak[..., None, None]
    g = torch.where(hit, torch.ones_like(g), g)
    heat = g.amax(1) if boxes.shape[1] else torch.zeros(b, nx, ny, device=boxes.device)
    return heat[:, None]


def focal_heatmap_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""CenterNet's penalty-reduced focal loss (alpha 2, beta 4), normalised by the number of peaks.

    .. math:: L = -\frac{1}{N} \sum \begin{cases} (1 - p)^2 \log p & y = 1 \\
              (1 - y)^4 p^2 \log(1 - p) & \text{otherwise} \end{cases}
    """
    logits = logits.float()
    p = logits.sigmoid()
    pos = target.eq(1).float()
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    loss = -(pos * (1 - p) ** 2 * log_p + (1 - pos) * (1 - target) ** 4 * p**2 * log_not_p).sum()
    return loss / pos.sum().clamp(min=1)


def seg_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, 1 - soft Dice) of (B, K, X, Y) logits against (B, X, Y) labels 0..K, Dice per class over the batch."""
    logits = logits.float()
    k = logits.shape[1]
    target = F.one_hot(labels.long(), k + 1)[..., 1:].permute(0, 3, 1, 2).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = logits.sigmoid()
    inter, total = (p * target).sum((0, 2, 3)), (p + target).sum((0, 2, 3))
    dice = (2 * inter + 1) / (total + 1)
    return bce, 1 - dice.mean()


def depth_loss(logits: torch.Tensor, depth: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, N, D, h, w) depth logits against the nearest bin of (B, N, H0, W0) depth maps
    (0 = unknown, skipped), min-pooled to (h, w) when the maps are finer: the nearest surface of each patch."""
    b, n, d, h, w = logits.shape
    target = depth.float().flatten(0, 1)[:, None]
    if target.shape[-2:] != (h, w):
        kh, kw = target.shape[-2] // h, target.shape[-1] // w
        if kh * h != target.shape[-2] or kw * w != target.shape[-1]:
            raise ValueError(f"depth maps of {tuple(target.shape[-2:])} do not pool to the model's {(h, w)}")
        target = torch.where(target > 0, target, torch.full_like(target, float("inf")))
        target = -F.max_pool2d(-target, (kh, kw))
        target = torch.where(torch.isinf(target), torch.zeros_like(target), target)
    valid = target[:, 0] > 0
    step = bins[1] - bins[0] if d > 1 else 1.0
    index = ((target[:, 0] - bins[0]) / step).round().clamp(0, d - 1).long()
    ce = F.cross_entropy(logits.flatten(0, 1).float(), index, reduction="none")
    return (ce * valid).sum() / valid.sum().clamp(min=1)


def iou_counts(prob: torch.Tensor, labels: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """(2, K) intersection and union per class of thresholded (B, K, X, Y) probabilities vs labels."""
    k = prob.shape[1]
    pred = prob > threshold
    true = F.one_hot(labels.long(), k + 1)[..., 1:].permute(0, 3, 1, 2).bool()
    return torch.stack(((pred & true).sum((0, 2, 3)), (pred | true).sum((0, 2, 3)))).double().cpu()


def centre_peaks(heat: torch.Tensor, threshold: float = PEAK_THRESHOLD) -> torch.Tensor:
    """(B, X, Y) bool local maxima (3x3) of (B, 1, X, Y) probabilities above `threshold`."""
    pooled = F.max_pool2d(heat, 3, stride=1, padding=1)
    return ((heat == pooled) & (heat > threshold))[:, 0]


def match_centres(peaks: torch.Tensor, boxes: torch.Tensor, x_range, y_range, grid) -> torch.Tensor:
    """(3,) true positives, predicted peaks, true centres (inside the grid); greedy matching within MATCH_CELLS."""
    (x0, x1), (y0, y1), (nx, ny) = x_range, y_range, grid
    counts = torch.zeros(3, dtype=torch.float64)
    for pk, bx in zip(peaks.cpu(), boxes.cpu()):
        bx = bx[bx[:, 7] > 0]
        ci, cj = (bx[:, 0] - x0) / (x1 - x0) * nx, (bx[:, 1] - y0) / (y1 - y0) * ny
        inside = (ci >= 0) & (ci < nx) & (cj >= 0) & (cj < ny)
        truth = torch.stack((ci[inside], cj[inside]), -1)
        found = pk.nonzero().double() + 0.5
        counts[1] += len(found)
        counts[2] += len(truth)
        if len(found) and len(truth):
            dist = torch.cdist(found, truth.double())
            for _ in range(min(len(found), len(truth))):
                d, flat = dist.flatten().min(0)
                if d > MATCH_CELLS:
                    break
                r, c = divmod(int(flat), dist.shape[1])
                counts[0] += 1
                dist[r, :], dist[:, c] = float("inf"), float("inf")
    return counts


def label_prior(labels: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-cell class frequencies (K, X, Y) of training labels and, per class, the threshold that maximises
    their IoU on those same labels (the 'prior' baseline: the best map that ignores the images)."""
    onehot = F.one_hot(labels.long(), k + 1)[..., 1:].permute(3, 0, 1, 2).bool()  # (K, S, X, Y)
    freq = onehot.float().mean(1)
    thresholds = torch.zeros(k)
    for c in range(k):
        best = -1.0
        candidates = torch.unique(torch.quantile(freq[c].flatten(), torch.linspace(0, 1, 201)))
        for t in candidates.tolist() + [-1.0]:  # -1: predict every cell
            pred = freq[c] > t
            inter = (onehot[c] & pred).sum()
            union = (onehot[c] | pred).sum()
            iou = float(inter) / max(1, int(union))
            if iou > best:
                best, thresholds[c] = iou, t
    return freq, thresholds


# --------------------------------------------------------------------------- the task


class BevSegmentation(Task):
    name = "bev_segmentation"
    main_metric = "iou_vehicle"
    mode = "max"
    smoke_overrides = ("train.max_steps=4", "train.log_every=1", "train.batch_size=2", "schedule.warmup_steps=0",
                       "data.n_train=4", "data.n_val=2", "data.n_test=2", "data.cache=false",
                       "data.image_size=[32, 56]")
    DATA_SCHEMA = {
        "source": Field(str, "synthetic", "synthetic | json"),
        "root": Field(OPT_STR, None, "json: the samples.json file, or a folder holding it (implies source json)"),
        "seed": Field(int, 0, "synthetic: scenes; json: the validation/test split"),
        "n_train": Field(int, 3000, "synthetic: training scenes", ge=1),
        "n_val": Field(int, 100, "synthetic: validation scenes (checkpoint selection; 0: none)", ge=0),
        "n_test": Field(int, 300, "synthetic: held-out test scenes (the card's metrics)", ge=1),
        "val_fraction": Field(NUM, 0.1, "json: share of samples for validation (and as many for testing)",
                              gt=0, lt=0.5),
        "image_size": Field(list, [64, 112], "[H, W] of every camera image (json images are resized)"),
        "grid": Field(list, [50, 50], "synthetic: [X, Y] BEV cells (json: from the file)"),
        "x_range": Field(list, [-25.0, 25.0], "synthetic: metres along ego x (json: from the file)"),
        "y_range": Field(list, [-25.0, 25.0], "synthetic: metres along ego y (json: from the file)"),
        "vehicles": Field(list, [4, 14], "synthetic: [min, max] vehicles per scene"),
        "pedestrians": Field(list, [0, 8], "synthetic: [min, max] pedestrians per scene"),
        "supersample": Field(int, 1, "synthetic: rays per pixel per axis", ge=1),
        "rig_jitter": Field(NUM, 1.0, "synthetic: per-scene camera rotation noise, degrees", ge=0),
        "cache": Field(bool, True, "synthetic: keep generated scenes in ~/.cache/zoo/bev_scenes (D.cache_dir())"),
        "centre_weight": Field(NUM, 1.0, "weight of the centre-heatmap loss", ge=0),
        "dice_weight": Field(NUM, 1.0, "weight of the soft-Dice loss", ge=0),
        "depth_weight": Field(NUM, 1.0, "weight of the per-pixel depth loss (where the data has depth maps)", ge=0),
    }
    AUGMENT_SCHEMA = {"enabled": Field(bool, True), **AUGMENT_FIELDS}

    # ----------------------------------------------------------------- data
    def build_data(self, cfg: dict, ctx) -> Data:
        size = cfg["image_size"]
        if len(size) != 2 or not all(isinstance(v, int) and v >= 8 for v in size):
            raise ValueError(f"data.image_size must be [H, W] with ints >= 8, got {size}")
        # A root always means the user's data (`zoo eval TAG --data DIR` only sets data.root).
        source = "json" if cfg["root"] else cfg["source"]
        if source == "synthetic":
            return self._synthetic(cfg)
        if source == "json":
            return self._json(cfg)
        raise ValueError(f"data.source: unknown source {cfg['source']!r}; choose synthetic or json")

    def _world(self, cfg) -> D.WorldConfig:
        for key in ("grid", "x_range", "y_range", "vehicles", "pedestrians"):
            if len(cfg[key]) != 2:
                raise ValueError(f"data.{key} must hold two values, got {cfg[key]}")
        if not (cfg["x_range"][0] < cfg["x_range"][1] and cfg["y_range"][0] < cfg["y_range"][1]):
            raise ValueError(f"data.x_range / y_range must be [min, max], got {cfg['x_range']} / {cfg['y_range']}")
        return D.WorldConfig(image_size=tuple(cfg["image_size"]), x_range=tuple(map(float, cfg["x_range"])),
                             y_range=tuple(map(float, cfg["y_range"])), grid=tuple(cfg["grid"]),
                             vehicles=tuple(cfg["vehicles"]), pedestrians=tuple(cfg["pedestrians"]),
                             supersample=cfg["supersample"], rig_jitter=float(cfg["rig_jitter"]))

    def _synthetic(self, cfg) -> Data:
        world = self._world(cfg)
        split = {}
        for k, name in enumerate(("train", "val", "test")):
            n = cfg[f"n_{name}"]
            split[name] = D.generate_scenes(n, 3 * cfg["seed"] + k, world, cfg["cache"]) if n else None
        return self._wrap(split, D.CLASSES, world.x_range, world.y_range, world.grid,
                          f"{cfg['n_test']} generated test scenes (seed {3 * cfg['seed'] + 2}, apart from training "
                          f"seed {3 * cfg['seed']} and validation seed {3 * cfg['seed'] + 1})",
                          ["zoo procedural multi-camera world (zoo.data.bev.generate_scenes)"])

    def _json(self, cfg) -> Data:
        if not cfg["root"]:
            raise ValueError("data.root: the json source needs a samples.json file or a folder holding one")
        scenes, layout = D.read_json(cfg["root"], tuple(cfg["image_size"]))
        n = len(scenes["images"])
        order = torch.from_numpy(np.random.default_rng(cfg["seed"]).permutation(n))
        held = min(n - 1, max(1, round(cfg["val_fraction"] * n))) if n > 2 else 0
        parts = {"val": order[:held], "test": order[held:2 * held], "train": order[2 * held:]}
        if held == 0 or len(parts["test"]) == 0:  # too few samples: evaluate on what was trained on, and say so
            parts = {"train": order, "val": order, "test": order}
        split = {name: {k: t[idx] for k, t in scenes.items()} for name, idx in parts.items()}
        note = (f"{len(parts['test'])} held-out sample(s) of {cfg['root']}" if held else
                f"the training samples themselves ({n} sample(s): too few to hold any out)")
        return self._wrap(split, layout.classes, layout.x_range, layout.y_range, layout.grid, note, [str(cfg["root"])])

    def _wrap(self, split, classes, x_range, y_range, grid, evaluation, datasets) -> Data:
        prior = label_prior(split["train"]["labels"], len(classes))
        sets = {k: Scenes(v, classes, x_range, y_range, grid, prior) if v is not None else None
                for k, v in split.items()}
        h, w = sets["train"].tensors[0].shape[-2:]
        info = {"num_classes": len(classes), "labels": list(classes), "grid": list(grid),
                "x_range": list(x_range), "y_range": list(y_range), "image_size": [h, w],
                "input_spec": {"cameras": sets["train"].tensors[0].shape[1], "size": [h, w], "channels": 3,
                               "range": [0.0, 1.0], "layout": "(B, N, 3, H, W)", "bev_grid": list(grid),
                               "x_range": list(x_range), "y_range": list(y_range), "classes": list(classes)},
                "evaluation": evaluation, "datasets": datasets}
        return Data(sets["train"], sets["val"], sets["test"], info)

    def model_args(self, data: Data) -> dict:
        i = data.info
        return {"num_classes": i["num_classes"], "grid": i["grid"], "x_range": i["x_range"], "y_range": i["y_range"],
                "image_size": i["image_size"]}

    def card_extras(self, data: Data) -> dict:
        return {k: data.info[k] for k in ("input_spec", "labels", "evaluation") if k in data.info}

    def build_augment(self, cfg: dict, data: Data, device):
        if not cfg["enabled"]:
            return None
        if len(cfg["scale"]) != 2 or not 0 < cfg["scale"][0] <= cfg["scale"][1]:
            raise ValueError(f"augment.scale must be [low, high] with 0 < low <= high, got {cfg['scale']}")
        ds = data.train
        return RigAugment(rotate_degrees=cfg["rotate_degrees"], flip_p=cfg["flip_p"], scale=tuple(cfg["scale"]),
                          photometric=cfg["photometric"], color_jitter=tuple(cfg["color_jitter"]),
                          bev_range=(ds.x_range, ds.y_range)).to(device)

    # ----------------------------------------------------------------- training
    @staticmethod
    def _inputs(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return batch["images"].float() / 255, batch["intrinsics"], batch["cam_to_ego"]

    def train_step(self, model, batch, ctx):
        images, intrinsics, cam_to_ego = self._inputs(batch)
        labels, boxes = batch["labels"], batch["boxes"]
        net = unwrap(model)
        if ctx.augment is not None:
            out = ctx.augment(images, intrinsics, cam_to_ego, labels, points=boxes[..., :3])
            images, cam_to_ego, labels = out.images, out.cam_to_ego, out.bev_labels
            boxes = torch.cat((out.points, boxes[..., 3:]), -1)
        pred = model(images, intrinsics, cam_to_ego)
        bce, dice = seg_loss(pred["seg"], labels)
        heat = centre_heatmap(boxes, net.x_range, net.y_range, net.grid)
        centre = focal_heatmap_loss(pred["centre"], heat)
        cfg = ctx.recipe["data"]
        loss = bce + cfg["dice_weight"] * dice + cfg["centre_weight"] * centre
        logs = {"bce": float(bce.detach()), "dice": float(dice.detach()), "centre": float(centre.detach())}
        if "depth" in pred and cfg["depth_weight"]:
            depth = depth_loss(pred["depth"], batch["depth"], net.depths)
            loss = loss + cfg["depth_weight"] * depth
            logs["depth"] = float(depth.detach())
        return loss, logs

    def evaluate(self, model, dataset: Scenes, ctx) -> dict[str, float]:
        net = unwrap(model)
        ours = (tuple(dataset.grid), tuple(map(float, dataset.x_range)), tuple(map(float, dataset.y_range)))
        theirs = (tuple(net.grid), tuple(map(float, net.x_range)), tuple(map(float, net.y_range)))
        if ours != theirs:
            raise ValueError(f"the data's BEV grid {ours[0]} over x {ours[1]}, y {ours[2]} m differs from the model's "
                             f"{theirs[0]} over x {theirs[1]}, y {theirs[2]} m")
        k = net.num_classes
        names = dataset.classes if len(dataset.classes) == k else [f"class{i + 1}" for i in range(k)]
        bs = ctx.recipe["train"]["eval_batch_size"] or 16
        counts, base, centre = torch.zeros(2, k, dtype=torch.float64), torch.zeros(2, 2, k, dtype=torch.float64), 0
        freq, thresholds = dataset.prior
        prior_pred = (freq > thresholds.view(-1, 1, 1)).float()[None]
        for batch in sequential_batches(dataset, bs, ctx.device):
            out = model(*self._inputs(batch))
            labels = batch["labels"]
            counts += iou_counts(out["seg"].float().sigmoid(), labels)
            base[0] += iou_counts(torch.ones_like(out["seg"], dtype=torch.float32), labels)  # every cell each class
            base[1] += iou_counts(prior_pred.to(labels.device).expand(len(labels), -1, -1, -1), labels)
            centre = centre + match_centres(centre_peaks(out["centre"].float().sigmoid()), batch["boxes"],
                                            dataset.x_range, dataset.y_range, dataset.grid)
        iou = (counts[0] / counts[1].clamp(min=1)).tolist()
        constant = (base[0, 0] / base[0, 1].clamp(min=1)).tolist()  # "all cells" beats "no cell" (IoU 0)
        prior = (base[1, 0] / base[1, 1].clamp(min=1)).tolist()
        metrics = {f"iou_{n}": v for n, v in zip(names, iou)}
        metrics["mean_iou"] = float(np.mean(iou))
        best = max(constant[0], prior[0])
        metrics.update({f"constant_iou_{names[0]}": constant[0], f"prior_iou_{names[0]}": prior[0],
                        f"iou_{names[0]}_over_baseline": iou[0] / max(best, 1e-9)})
        tp, n_pred, n_true = centre.tolist()
        precision, recall = tp / max(1, n_pred), tp / max(1, n_true)
        metrics.update({"centre_precision": precision, "centre_recall": recall,
                        "centre_f1": 2 * precision * recall / max(1e-9, precision + recall)})
        if names[0] != "vehicle":  # keep the main metric's name for user data with other class names
            metrics["iou_vehicle"] = iou[0]
        return metrics

    # ----------------------------------------------------------------- use
    def finetune_overrides(self, data_path: str) -> list[str]:
        return ["data.source=json", f"data.root={data_path}"]

    def sample_scene(self, model) -> dict:
        net = unwrap(model)
        world = D.WorldConfig(image_size=tuple(net.image_size), x_range=net.x_range, y_range=net.y_range,
                              grid=net.grid)
        return D.generate_scenes(1, 12345, world, cache=False)

    def sample_input(self, model) -> tuple:
        return self._inputs(self.sample_scene(model))

    def draw_sample(self, model, out_path: Path) -> Path:
        scene = self.sample_scene(model)
        with torch.no_grad():
            out = model(*self._inputs(scene))
        return draw_scene(scene, 0, out, Path(out_path), unwrap(model))

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        """Draw each sample: the cameras with predicted (red) and true (green) boxes, the BEV map and its truth.

        `inputs`: a samples.json in zoo's layout (or a folder holding one); its first 8 samples are
        drawn. Nothing: a generated scene.
        """
        net = unwrap(model)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        scenes = D.read_json(inputs, tuple(net.image_size))[0] if inputs else self.sample_scene(net)
        device = next(net.parameters()).device
        paths = []
        for i in range(min(8, len(scenes["images"]))):
            one = {k: v[i:i + 1].to(device) for k, v in scenes.items()}
            with torch.no_grad():
                out = net(*self._inputs(one))
            paths.append(draw_scene({k: v.cpu() for k, v in one.items()}, 0, out, out_dir / f"bev_{i:03d}.png", net))
        return paths


# --------------------------------------------------------------------------- drawing


def occupancy_boxes(mask: np.ndarray, cls: int, x_range, y_range, height: float) -> list[list[float]]:
    """Oriented boxes [x, y, z, l, w, h, yaw, cls] around the connected components of a (X, Y) mask (PCA axes)."""
    from scipy import ndimage

    comp, n = ndimage.label(mask)
    (x0, x1), (y0, y1) = x_range, y_range
    dx, dy = (x1 - x0) / mask.shape[0], (y1 - y0) / mask.shape[1]
    boxes = []
    for c in range(1, n + 1):
        i, j = np.nonzero(comp == c)
        pts = np.stack((x0 + (i + 0.5) * dx, y0 + (j + 0.5) * dy), -1)
        centre = pts.mean(0)
        spread = np.cov((pts - centre).T) if len(pts) > 1 else np.eye(2)
        axis = np.linalg.eigh(spread + 1e-6 * np.eye(2))[1][:, -1]  # the major axis
        yaw = np.arctan2(axis[1], axis[0])
        rot = np.array([[np.cos(yaw), np.sin(yaw)], [-np.sin(yaw), np.cos(yaw)]])
        local = (pts - centre) @ rot.T
        lo, hi = local.min(0) - [dx / 2, dy / 2], local.max(0) + [dx / 2, dy / 2]
        mid = centre + ((lo + hi) / 2) @ rot
        boxes.append([mid[0], mid[1], height / 2, hi[0] - lo[0], hi[1] - lo[1], height, yaw, cls])
    return boxes


def _draw_box(ax, corners_cam: np.ndarray, k: np.ndarray, colour: str) -> None:
    """Draw a box's 12 edges (camera coordinates (8, 3)), clipped at the near plane."""
    edges = [(0, 1), (1, 2), (2, 3), (3, 0), (4, 5), (5, 6), (6, 7), (7, 4), (0, 4), (1, 5), (2, 6), (3, 7)]
    near = 0.2
    for a, b in edges:
        p, q = corners_cam[a], corners_cam[b]
        if p[2] < near and q[2] < near:
            continue
        if p[2] < near or q[2] < near:  # move the hidden end onto the near plane
            t = (near - p[2]) / (q[2] - p[2])
            cut = p + t * (q - p)
            p, q = (cut, q) if p[2] < near else (p, cut)
        uv = np.stack((p, q)) @ k.T
        uv = uv[:, :2] / uv[:, 2:]
        ax.plot(uv[:, 0], uv[:, 1], color=colour, linewidth=0.8)


def draw_scene(scene: dict, i: int, out: dict, path: Path, net) -> Path:
    """Cameras (top: front-left, front, front-right; bottom: back-left, back, back-right) with boxes fitted to
    the predicted occupancy (red) and the true boxes (green), then the predicted and true BEV maps."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    plt = pyplot()

    prob = out["seg"][i].float().sigmoid().cpu().numpy()  # (K, X, Y)
    k_cls = prob.shape[0]
    pred = np.where(prob.max(0) > 0.5, prob.argmax(0) + 1, 0)
    truth = scene["labels"][i].numpy()
    pred_boxes = []
    for c in range(k_cls):
        pred_boxes += occupancy_boxes(pred == c + 1, c + 1, net.x_range, net.y_range, 1.6 if c == 0 else 1.7)
    true_boxes = scene["boxes"][i]
    true_boxes = true_boxes[true_boxes[:, 7] > 0]
    images = scene["images"][i]
    n = images.shape[0]
    order = [1, 0, 2, 3, 5, 4] if n == 6 else list(range(n))
    cols = (n + 1) // 2
    fig = plt.figure(figsize=(3.2 * cols + 7, 4.6))
    grid = fig.add_gridspec(2, cols + 2, width_ratios=[1.6] * cols + [1.9, 1.9])
    for slot, cam in enumerate(order):
        ax = fig.add_subplot(grid[slot // cols, slot % cols])
        ax.imshow(images[cam].permute(1, 2, 0).numpy())
        h, w = images.shape[-2:]
        to_cam = np.linalg.inv(scene["cam_to_ego"][i, cam].double().numpy())
        k = scene["intrinsics"][i, cam].double().numpy()
        for boxes, colour in ((true_boxes.tolist(), "lime"), (pred_boxes, "red")):
            for box in boxes:
                corners = D.box_corners(torch.tensor([box], dtype=torch.float64))[0].numpy()
                _draw_box(ax, corners @ to_cam[:3, :3].T + to_cam[:3, 3], k, colour)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(D.CAMERAS[cam] if n == 6 else f"camera {cam}", fontsize=8)
        ax.axis("off")
    cmap = ListedColormap(["#202020", "#e03c31", "#3c8ce0", "#e0c030", "#40c040"][:k_cls + 1])
    (x0, x1), (y0, y1) = net.x_range, net.y_range
    for col, (title, m) in enumerate((("prediction", pred), ("ground truth", truth))):
        ax = fig.add_subplot(grid[:, cols + col])
        # Forward (x) up and left (y) to the left, as seen from above: rows and columns both flip.
        ax.imshow(m[::-1, ::-1], cmap=cmap, vmin=0, vmax=k_cls, extent=(y1, y0, x0, x1), interpolation="nearest")
        ax.add_patch(Rectangle((-0.95, -1.0), 1.9, 4.5, color="white"))  # the ego car
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("y (m, left +)", fontsize=7)
        ax.set_ylabel("x (m, forward +)", fontsize=7)
        ax.tick_params(labelsize=6)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    names = ((getattr(net, "pretrained_cfg", None) or {}).get("labels") or D.CLASSES)[:k_cls]
    names = list(names) + [f"class {c + 1}" for c in range(len(names), k_cls)]
    handles = [Line2D([], [], color="lime", label="true box (cameras)"),
               Line2D([], [], color="red", label="box fitted to the predicted map")]
    handles += [Patch(color=cmap(c + 1), label=f"BEV: {name}") for c, name in enumerate(names)]
    handles += [Patch(color=cmap(0), label="BEV: background"),
                Patch(facecolor="white", edgecolor="grey", label="ego car")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    return save(fig, path, dpi=80, rect=(0, 0.06, 1, 1))


TASK = BevSegmentation()
