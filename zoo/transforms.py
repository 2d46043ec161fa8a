"""`zoo.transforms(name_or_model)`: the preprocessing a card describes, as one callable (torchvision's
`weights.transforms()` idea), from the input a field's own tools produce to what forward expects.

    t = zoo.transforms("gcn.cora")
    data = t(Planetoid(root, "Cora")[0]);  logits = model(data.x, data.edge_index)

    t = zoo.transforms("unet3d.mni152_tissue")
    x = t(nib.load("t1.nii.gz"))                          # (1, 1, D, H, W): RAS, card spacing, z-scored
    seg = t.to_input_grid(model.segment(x[0]), img)      # a NIfTI on the input's own grid and affine

Each callable is built from the card's typed input spec (zoo.specs), never from ad-hoc keys.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .specs import CameraSpec, GraphSpec, ImageSpec, InputSpec, ObservationSpec, RigSpec, VolumeSpec, spec_of


class Transform:
    """Base: holds the typed spec; `repr` shows it."""

    def __init__(self, spec: InputSpec):
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec})"


def _image_tensor(image, channels: int) -> torch.Tensor:
    """(B, C, H, W) uint8 or float of a PIL image, a HWC uint8 array, or a (C, H, W) / (B, C, H, W) tensor."""
    from PIL import Image

    if isinstance(image, Image.Image):
        image = image.convert("L" if channels == 1 else "RGB")
        arr = np.asarray(image)
        image = torch.from_numpy(arr.copy()).reshape(arr.shape[0], arr.shape[1], -1).permute(2, 0, 1)
    elif isinstance(image, np.ndarray):
        arr = image if image.ndim != 2 else image[..., None]
        if arr.ndim != 3:
            raise ValueError(f"an image array must be (H, W) or (H, W, C), got shape {image.shape}")
        image = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a PIL image, a numpy array or a tensor, got {type(image).__name__}")
    x = image[None] if image.ndim == 3 else image
    if x.ndim != 4:
        raise ValueError(f"an image tensor must be (C, H, W) or (B, C, H, W), got shape {tuple(image.shape)}")
    if x.dtype != torch.uint8 and not x.is_floating_point():
        raise ValueError(f"image tensors must be uint8 (0-255) or float (0-1), got {x.dtype}")
    if x.shape[1] != channels:
        if x.shape[1] == 3 and channels == 1:  # ITU-R 601 luma, as PIL's convert("L")
            w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            x = (x.float() * w).sum(1, keepdim=True).round().to(x.dtype) if x.dtype == torch.uint8 else (
                x * w.to(x.dtype)).sum(1, keepdim=True)
        elif x.shape[1] == 1:
            x = x.expand(-1, channels, -1, -1)
        else:
            raise ValueError(f"images with {x.shape[1]} channels cannot feed a {channels}-channel model")
    return x


class ImageTransform(Transform):
    """PIL image / uint8 tensor -> (B, C, H, W) float: resize (+ centre crop) and normalise as the card says.

    With mean/std the card's evaluation pre-processing (ClassificationAugment in eval mode) is used;
    without them (patchcore) the images are resized and scaled to [0, 1] only.
    """

    def __init__(self, spec: ImageSpec):
        super().__init__(spec)
        from .augment import ClassificationAugment

        mean = spec.mean or (0.0,) * spec.channels
        std = spec.std or (1.0,) * spec.channels
        self._eval = ClassificationAugment(spec.size, mean, std, train=False, interpolation=spec.interpolation,
                                           crop_pct=spec.crop_pct)

    @torch.no_grad()
    def __call__(self, image) -> torch.Tensor:
        x = _image_tensor(image, self.spec.channels)
        return self._eval(x.float() / 255 if x.dtype == torch.uint8 else x.float())


class VolumeTransform(Transform):
    """NIfTI image (or array) -> (1, C, D, H, W) float in the card's orientation and spacing, z-scored.

    Reorientation is nibabel's closest canonical (RAS) orientation; resampling is nibabel.processing
    (trilinear). `to_input_grid` maps a prediction made on that grid back onto the input image's
    own grid and affine, so a NIfTI in any orientation and at any spacing gives the same segmentation.
    An array is taken as already on the card's grid (RAS voxel order at its spacing), C first or 3D.
    """

    spec: VolumeSpec

    def _model_grid(self, img):
        import nibabel as nib
        from nibabel.processing import resample_to_output

        if self.spec.orientation != "RAS":
            raise ValueError(f"unsupported card orientation {self.spec.orientation!r}: zoo reorients to RAS")
        canonical = nib.as_closest_canonical(img)
        zooms = np.asarray(canonical.header.get_zooms()[:3], dtype=float)
        if np.allclose(zooms, self.spec.spacing_mm, rtol=1e-3) and np.allclose(
                canonical.affine[:3, :3], np.diag(zooms), atol=1e-4):
            return canonical  # already RAS at the card's spacing: no interpolation at all
        return resample_to_output(canonical, voxel_sizes=self.spec.spacing_mm, order=1)

    def _channels(self, image) -> list:
        import nibabel as nib

        if not isinstance(image, nib.spatialimages.SpatialImage):
            raise TypeError(f"expected a nibabel image, got {type(image).__name__}")
        if image.ndim == 3:
            return [image]
        if image.ndim == 4:  # modalities last, as NIfTI stores them
            return list(nib.funcs.four_to_three(image))
        raise ValueError(f"a NIfTI for this model must be 3D or 4D, got shape {image.shape}")

    @torch.no_grad()
    def __call__(self, image) -> torch.Tensor:
        from .families.unet3d.data import normalise_intensity

        if isinstance(image, (np.ndarray, torch.Tensor)):
            arr = torch.as_tensor(np.asarray(image, dtype=np.float32))
            arr = arr[None] if arr.ndim == 3 else arr
        else:
            arr = torch.from_numpy(np.stack([np.asarray(self._model_grid(c).dataobj, dtype=np.float32)
                                             for c in self._channels(image)]))
        if arr.ndim != 4 or arr.shape[0] != self.spec.channels:
            raise ValueError(f"expected a volume with {self.spec.channels} channel(s) (C, D, H, W) or (D, H, W), "
                             f"got shape {tuple(arr.shape)}")
        return normalise_intensity(arr)[None]

    def to_input_grid(self, prediction: torch.Tensor, image, *, order: int | None = None):
        """A NIfTI of `prediction` (labels (D, H, W), or probabilities (K, D, H, W)) on `image`'s grid.

        Labels are resampled by nearest neighbour; probabilities trilinearly and then arg-maxed, which
        keeps boundaries smooth. Returns a uint8 label image with the input's affine.
        """
        import nibabel as nib
        from nibabel.processing import resample_from_to

        grid = self._model_grid(self._channels(image)[0])
        pred = prediction.detach().cpu().float().numpy()
        target = (image.shape[:3], image.affine)
        if pred.ndim == 3:
            out = resample_from_to(nib.Nifti1Image(pred, grid.affine), target, order=0 if order is None else order)
            labels = np.rint(np.asarray(out.dataobj))
        elif pred.ndim == 4:
            probs = [np.asarray(resample_from_to(nib.Nifti1Image(p, grid.affine), target,
                                                 order=1 if order is None else order).dataobj) for p in pred]
            labels = np.argmax(np.stack(probs), axis=0)
        else:
            raise ValueError(f"prediction must be labels (D, H, W) or probabilities (K, D, H, W), "
                             f"got shape {tuple(prediction.shape)}")
        return nib.Nifti1Image(labels.astype(np.uint8), image.affine)


class GraphTransform(Transform):
    """PyG Data (e.g. Planetoid(root, "Cora")[0]) -> a copy with the node features the model trained on."""

    spec: GraphSpec

    def __call__(self, data):
        from .families.gcn.data import normalize_features

        x = getattr(data, "x", None)
        if x is None or getattr(data, "edge_index", None) is None:
            raise ValueError("expected a PyG Data with x and edge_index")
        if x.ndim != 2 or x.shape[1] != self.spec.features:
            raise ValueError(f"the graph has node features of shape {tuple(x.shape)}; the model expects "
                             f"(N, {self.spec.features})")
        out = data.clone()
        if self.spec.normalize_features:
            normalize_features(out)
        return out


class ObservationTransform(Transform):
    """gymnasium observation (one, or a batch from a vector env) -> (B, *obs_shape) float32 tensor."""

    spec: ObservationSpec

    def __call__(self, obs) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(obs))
        shape = tuple(self.spec.obs_shape)
        raw = (shape[1], shape[2], shape[0]) if self.spec.channels_last else shape
        if tuple(x.shape) == raw:
            x = x[None]
        if tuple(x.shape[1:]) != raw:
            raise ValueError(f"{self.spec.env} observations are {list(raw)} (or a batch of them), "
                             f"got shape {tuple(np.shape(obs))}")
        if self.spec.channels_last:
            x = x.permute(0, 3, 1, 2)
        return x.contiguous().to(torch.float32)


class CameraTransform(Transform):
    """A transforms.json camera -> keyword arguments of `model.render` at the card's image size.

    `camera` is a frame ({"transform_matrix": 4x4, ...}) with `camera_angle_x` either in it or
    given as `meta` (the transforms.json document); nerfstudio's `fl_x` + `w` work as well.
    """

    spec: CameraSpec

    def __call__(self, camera: dict, meta: dict | None = None) -> dict[str, Any]:
        from .families.nerf.data import check_pose

        meta = {**(meta or {}), **camera}
        h, w = self.spec.image_size
        if "camera_angle_x" in meta:
            focal = 0.5 * w / np.tan(0.5 * float(meta["camera_angle_x"]))
        elif "fl_x" in meta and "w" in meta:
            focal = float(meta["fl_x"]) * w / float(meta["w"])
        else:
            raise ValueError("a transforms.json camera needs camera_angle_x (Blender) or fl_x and w (nerfstudio)")
        if "transform_matrix" not in meta:
            raise ValueError("a transforms.json camera needs its frame's transform_matrix")
        c2w = check_pose(meta["transform_matrix"], "camera")
        return {"c2w": c2w, "height": h, "width": w, "focal": float(focal), "background": self.spec.background}


class RigTransform(Transform):
    """A camera rig -> (images (1, N, 3, H, W) float, intrinsics (1, N, 3, 3), cam_to_ego (1, N, 4, 4)).

    `rig` is a list of N cameras, each {"image": PIL / HWC uint8 array / CHW tensor, "intrinsics": 3x3,
    "cam_to_ego": 4x4}, or one dict of those three keys holding N of each. Images are resized to the
    card's size and the intrinsics scaled with them.
    """

    spec: RigSpec

    def __call__(self, rig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F

        if isinstance(rig, dict):
            rig = [{"image": i, "intrinsics": k, "cam_to_ego": e}
                   for i, k, e in zip(rig["images"], rig["intrinsics"], rig["cam_to_ego"])]
        if len(rig) != self.spec.cameras:
            raise ValueError(f"the model takes {self.spec.cameras} cameras, the rig has {len(rig)}")
        h, w = self.spec.size
        images, ks, poses = [], [], []
        for i, cam in enumerate(rig):
            missing = {"image", "intrinsics", "cam_to_ego"} - set(cam)
            if missing:
                raise ValueError(f"camera {i} lacks {sorted(missing)}")
            x = _image_tensor(cam["image"], 3)
            x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
            k = torch.as_tensor(np.asarray(cam["intrinsics"], dtype=np.float32)).clone()
            e = torch.as_tensor(np.asarray(cam["cam_to_ego"], dtype=np.float32))
            if k.shape != (3, 3) or e.shape != (4, 4):
                raise ValueError(f"camera {i}: intrinsics must be 3x3 and cam_to_ego 4x4, got {tuple(k.shape)} "
                                 f"and {tuple(e.shape)}")
            sy, sx = h / x.shape[-2], w / x.shape[-1]
            if (sy, sx) != (1.0, 1.0):
                x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
                k[0] *= sx
                k[1] *= sy
            images.append(x[0])
            ks.append(k)
            poses.append(e)
        return torch.stack(images)[None], torch.stack(ks)[None], torch.stack(poses)[None]


TRANSFORMS: dict[type[InputSpec], type[Transform]] = {
    ImageSpec: ImageTransform, VolumeSpec: VolumeTransform, GraphSpec: GraphTransform,
    ObservationSpec: ObservationTransform, CameraSpec: CameraTransform, RigSpec: RigTransform,
}


def _card_of(name_or_model) -> dict:
    if isinstance(name_or_model, (str, os.PathLike)):
        import json

        from .registry import _source_of, model_info

        name = str(name_or_model)
        if name.startswith(("local-dir:", "hf-hub:")):
            return _source_of(name, False)[1]
        for folder in (Path(name), Path(name) / "model"):  # a weights folder or a run directory
            if (folder / "config.json").is_file():
                return json.loads((folder / "config.json").read_text())
        info = model_info(name)
        if "input_spec" in info and "task" in info and "." in name_or_model:
            return info
        if info.get("default_card"):
            return info["default_card"]
        raise ValueError(f"{name_or_model!r} has no published weights, so no card says how its inputs are "
                         "prepared; pass a tag (zoo.list_pretrained()) or a model made by zoo.create")
    cfg = getattr(name_or_model, "pretrained_cfg", None)
    if not cfg:
        raise ValueError(f"{type(name_or_model).__name__} has no pretrained_cfg: build it with zoo.create")
    return cfg


def transforms(name_or_model) -> Transform:
    """The callable from a field's raw input to what the model's forward expects (see the module docstring).

    `name_or_model`: a tag ("gcn.cora"), a family or architecture name (its default tag's card), a weights
    folder, a run directory, "local-dir:PATH" / "hf-hub:org/repo", or a model from `zoo.create` (its own
    card: an adapted model's channels and statistics).
    """
    card = _card_of(name_or_model)
    spec = spec_of(card)
    return TRANSFORMS[type(spec)](spec)


class _CallableModule(__import__("types").ModuleType):
    """`zoo.transforms` is this module once anything imports it; calling it is calling `transforms`."""

    def __call__(self, name_or_model) -> Transform:
        return transforms(name_or_model)


__import__("sys").modules[__name__].__class__ = _CallableModule
