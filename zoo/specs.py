"""Typed input specs: what a model's forward expects, one dataclass per task, stored in every card.

A card's `input_spec` is the `to_dict()` of one of these, so every card of a task carries the same
keys; `spec_of(card)` reads it back (older cards' missing keys take the defaults below).
`zoo.transforms` builds the callable from raw community input to the model's input from it, and
the model card's "Input" section describes it in words.

    ImageSpec         classification, anomaly_detection   PIL image / uint8 tensor -> (B, C, H, W) float
    VolumeSpec        volume_segmentation                 NIfTI image / array -> (1, C, D, H, W) float
    GraphSpec         node_classification                 PyG Data -> Data with the features the model trained on
    ObservationSpec   rl                                  gymnasium observation -> (B, *obs_shape) float
    CameraSpec        novel_view                          transforms.json camera -> render(c2w, H, W, focal)
    RigSpec           bev_segmentation                    camera rig -> (images, intrinsics, cam_to_ego)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _tuple(value) -> tuple | None:
    return None if value is None else tuple(_tuple(v) if isinstance(v, list) else v for v in value)


@dataclass(frozen=True)
class InputSpec:
    """Base: `from_dict` checks the keys (unknown ones are an error naming them), `to_dict` is JSON-ready."""

    tasks: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_dict(cls, raw: dict | None, **defaults: Any) -> InputSpec:
        raw = dict(raw or {})
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown input_spec key(s) {unknown}; expected {sorted(names)}")
        values = {**{k: v for k, v in defaults.items() if k in names and v is not None}, **raw}
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise ValueError(f"{cls.__name__}: input_spec lacks {missing}")
        return cls(**{k: _tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def to_dict(self) -> dict:
        def plain(v):
            if isinstance(v, tuple):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v

        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def describe(self) -> str:  # pragma: no cover - every subclass says it in words
        raise NotImplementedError


@dataclass(frozen=True)
class ImageSpec(InputSpec):
    """2D images. `mean`/`std` None: the model takes [0, 1] floats and normalises inside (patchcore)."""

    tasks: ClassVar[tuple[str, ...]] = ("classification", "anomaly_detection")
    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"
    crop_pct: float = 1.0
    range: tuple[float, float] = (0.0, 1.0)
    tta: tuple[str, ...] = ()
    layout: str = "(B, C, H, W) float"

    def describe(self) -> str:
        colour = "grey" if self.channels == 1 else "RGB" if self.channels == 3 else f"{self.channels}-channel"
        norm = (f"normalised with mean {list(self.mean)} and std {list(self.std)}" if self.mean
                else f"floats in {list(self.range)}, normalised inside the model")
        crop = "" if self.crop_pct == 1.0 else f", centre crop {self.crop_pct}"
        tta = (f" zoo's evaluation averages test-time views ({', '.join(self.tta)}); forward is one "
               "view.") if self.tta else ""
        return (f"{colour} images, {self.interpolation} resize to {self.size[0]}x{self.size[1]}{crop}, {norm}; "
                f"layout {self.layout}. Raw input: a PIL image or a uint8 tensor (C, H, W) / (B, C, H, W).{tta}")


@dataclass(frozen=True)
class VolumeSpec(InputSpec):
    tasks: ClassVar[tuple[str, ...]] = ("volume_segmentation",)
    channels: int
    spacing_mm: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    orientation: str = "RAS"
    modality: str = ""
    layout: str = "(B, C, D, H, W)"
    normalisation: str = "per-channel z-score over non-zero voxels, zeros kept"

    def describe(self) -> str:
        sp = "x".join(f"{v:g}" for v in self.spacing_mm)
        return (f"{self.channels}-channel volumes ({self.modality or 'any modality'}) in {self.orientation} voxel "
                f"order at {sp} mm, {self.normalisation}; layout {self.layout}, any size (sliding window of "
                f"{'x'.join(map(str, self.patch_size))}). Raw input: a NIfTI image in any orientation and spacing "
                "(reoriented and resampled; predictions are mapped back to its grid) or an array on that grid.")


@dataclass(frozen=True)
class GraphSpec(InputSpec):
    tasks: ClassVar[tuple[str, ...]] = ("node_classification",)
    features: int
    dataset: str | None = None
    normalize_features: bool = True

    def describe(self) -> str:
        norm = ("row-normalised (PyG NormalizeFeatures: shifted to >= 0, rows sum to 1)"
                if self.normalize_features else "used as they are")
        return (f"a graph with {self.features} node features, {norm}; forward(x, edge_index). Raw input: a PyG "
                f"Data{f' such as Planetoid(root, {self.dataset!r})[0]' if self.dataset else ''}.")


@dataclass(frozen=True)
class ObservationSpec(InputSpec):
    tasks: ClassVar[tuple[str, ...]] = ("rl",)
    env: str
    obs_shape: tuple[int, ...]
    n_actions: int
    obs_dtype: str = "float32"
    env_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    preprocessing: tuple[str, ...] = ()
    evaluation: dict = field(default_factory=dict)

    @property
    def channels_last(self) -> bool:
        """The raw observation is (H, W, C) and forward wants (C, H, W) (MinAtar)."""
        return len(self.obs_shape) == 3 and any("channels first" in p for p in self.preprocessing)

    def describe(self) -> str:
        steps = "; ".join(self.preprocessing) or "none"
        return (f"observations of `{self.env}` shaped {list(self.obs_shape)} ({self.obs_dtype}; preprocessing: "
                f"{steps}), batched as (B, {', '.join(map(str, self.obs_shape))}); forward returns "
                f"{self.n_actions} Q-values. Raw input: the gymnasium observation (one or a batch).")


@dataclass(frozen=True)
class CameraSpec(InputSpec):
    tasks: ClassVar[tuple[str, ...]] = ("novel_view",)
    image_size: tuple[int, int]
    focal: float
    camera_radius: float | None = None
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    convention: str = "OpenGL camera-to-world"

    def describe(self) -> str:
        h, w = self.image_size
        return (f"cameras as {self.convention} 4x4 poses, rendered at {h}x{w} (focal {self.focal:.1f} px at that "
                f"width) on a background {list(self.background)}: model.render(c2w, height, width, focal). "
                "Raw input: a transforms.json camera (camera_angle_x and a frame's transform_matrix).")


@dataclass(frozen=True)
class RigSpec(InputSpec):
    tasks: ClassVar[tuple[str, ...]] = ("bev_segmentation",)
    cameras: int
    size: tuple[int, int]
    channels: int = 3
    range: tuple[float, float] = (0.0, 1.0)
    layout: str = "(B, N, 3, H, W)"
    bev_grid: tuple[int, int] = (50, 50)
    x_range: tuple[float, float] = (-25.0, 25.0)
    y_range: tuple[float, float] = (-25.0, 25.0)
    classes: tuple[str, ...] = ()

    def describe(self) -> str:
        return (f"{self.cameras} RGB images resized to {self.size[0]}x{self.size[1]} (floats in {list(self.range)}, "
                f"layout {self.layout}) with their 3x3 intrinsics (scaled with the resize) and 4x4 cam_to_ego "
                f"(OpenCV camera, ego x forward); BEV grid {list(self.bev_grid)} over x {list(self.x_range)} m, "
                f"y {list(self.y_range)} m. Raw input: the rig, {{images, intrinsics, cam_to_ego}} per camera.")


SPECS: tuple[type[InputSpec], ...] = (ImageSpec, VolumeSpec, GraphSpec, ObservationSpec, CameraSpec, RigSpec)


def spec_class(task: str) -> type[InputSpec]:
    for cls in SPECS:
        if task in cls.tasks:
            return cls
    raise KeyError(f"no input spec for task {task!r}; known: {', '.join(t for c in SPECS for t in c.tasks)}")


def spec_of(card: dict) -> InputSpec:
    """The typed input spec of a card (or `model.pretrained_cfg`): its `input_spec` read by the task's class."""
    task = card.get("task")
    if not task:
        raise KeyError(f"card {card.get('tag') or card.get('arch')!r} names no task")
    return spec_class(task).from_dict(card.get("input_spec"))


# --------------------------------------------------------------------------- what a fit learns for the card


@dataclass(frozen=True)
class FitSpec:
    """Base of what a task's `fit` learns besides the weights and the card carries, one dataclass per task.

    `fit` sets it on `Data.fitted`; the task's `card_extras` writes `to_card()` into the card, and `from_card`
    reads it back (None when the card has none).
    """

    def to_card(self) -> dict:  # pragma: no cover - every subclass says where its fields go
        raise NotImplementedError


@dataclass(frozen=True)
class AnomalyThreshold(FitSpec):
    """anomaly_detection: the thresholds the held-out normal images chose (card key `threshold`).

    image / pixel: score above which an image / a pixel is called anomalous; quantile: of the held-out
    normal images' scores (1.0: their maximum); held_out_normals: how many there were.
    """

    image: float
    pixel: float
    quantile: float
    held_out_normals: int

    def to_card(self) -> dict:
        return {"threshold": dataclasses.asdict(self)}

    @classmethod
    def from_card(cls, card: dict) -> AnomalyThreshold | None:
        return cls(**card["threshold"]) if card.get("threshold") else None


@dataclass(frozen=True)
class ReturnCurves(FitSpec):
    """rl: returns met while training, as [env step, return] points (card keys `return_curve`, `eval_curve`).

    train: mean return of the epsilon-greedy training episodes per log interval; val: the greedy
    evaluations made during training (empty when there were none).
    """

    train: list = field(default_factory=list)
    val: list = field(default_factory=list)

    def to_card(self) -> dict:
        out = {"return_curve": [list(p) for p in self.train]}
        if self.val:
            out["eval_curve"] = [list(p) for p in self.val]
        return out

    @classmethod
    def from_card(cls, card: dict) -> ReturnCurves | None:
        if not card.get("return_curve"):
            return None
        return cls(train=card["return_curve"], val=card.get("eval_curve") or [])
