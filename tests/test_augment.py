"""zoo.augment: geometry stays consistent between images and labels, seeds reproduce, devices are kept."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.augment import ClassificationAugment, ImageMaskAugment, VolumeAugment3D, seeded
from zoo.augment.classification import sample_resized_crops, tta_views
from zoo.augment.color import _GRAY, apply_color_twist, sample_color_twist
from zoo.families.bev.augment import RigAugment

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("c,bchw->bhw", _GRAY.to(x), x)


# --- classification ------------------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_classification_train_shapes_device_and_uint8(device):
    aug = ClassificationAugment(24, MEAN, STD, color_jitter=(0.4, 0.4, 0.4, 0.1))
    raw = torch.randint(0, 256, (6, 3, 40, 32), dtype=torch.uint8, device=device)
    out = aug(raw, generator=3)
    assert out.shape == (6, 3, 24, 24) and out.dtype == torch.float32 and out.device == raw.device
    torch.testing.assert_close(out, aug(raw.float() / 255, generator=3), atol=1e-4, rtol=1e-4)


def test_classification_seeds_reproduce_and_leave_global_rng_alone():
    aug = ClassificationAugment((20, 28), MEAN, STD, color_jitter=0.4)
    x = torch.rand(4, 3, 32, 40)
    state = torch.get_rng_state()
    first, again, other = aug(x, generator=7), aug(x, generator=7), aug(x, generator=8)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first, again) and not torch.equal(first, other)
    gen = torch.Generator().manual_seed(1)
    assert not torch.equal(aug(x, generator=gen), aug(x, generator=gen))  # a generator advances
    torch.manual_seed(5)
    a = aug(x)
    torch.manual_seed(5)
    assert torch.equal(a, aug(x))  # without generator=, the global seed decides


def test_classification_crop_and_flip_geometry():
    # Pixel value = source column: after crop + resize, each output row is linear in the output
    # column with slope (crop width / out width), negative when flipped.
    aug = ClassificationAugment(16, [0.0], [1.0], scale=(0.3, 1.0))
    x = torch.arange(64.0).expand(32, 1, 48, 64).contiguous()
    out = aug(x, generator=0)[:, 0]
    slopes = out[:, :, 1:] - out[:, :, :-1]
    assert torch.allclose(slopes, slopes[:, :1, :1].expand_as(slopes), atol=1e-3)  # one slope per image
    assert (slopes[:, 0, 0] > 0).any() and (slopes[:, 0, 0] < 0).any()  # both flipped and not
    assert out.min() >= 0 and out.max() <= 63


def test_tta_views_shift_by_one_pixel_and_mirror():
    x = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)
    assert len(tta_views(x, [])) == 1 and len(tta_views(x, ["flip"])) == 2
    views = tta_views(x, ["shift", "flip"])
    assert len(views) == 10 and all(v.shape == x.shape and v.dtype == torch.uint8 for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[5], x.flip(-1))
    up, right = views[1], views[4]  # (dy, dx) = (-1, 0): the row above moves in; (0, 1): the column to the right
    assert torch.equal(up[..., 1:, :], x[..., :-1, :]) and (up[..., 0, :] == 0).all()
    assert torch.equal(right[..., :, :-1], x[..., :, 1:]) and (right[..., :, -1] == 0).all()
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        tta_views(x, ["rotate"])


def test_resized_crop_boxes_follow_torchvision_rules():
    boxes = sample_resized_crops(2000, 50, 80, (0.2, 0.9), (0.5, 2.0))
    top, left, h, w = boxes.T
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 50).all() and (left + w <= 80).all()
    area = h * w / (50 * 80)
    assert area.min() > 0.15 and area.max() < 0.95
    assert torch.equal(boxes, boxes.round())
    # an impossible aspect ratio falls back to the largest centred crop
    fallback = sample_resized_crops(3, 10, 100, (0.9, 1.0), (1.0, 1.0))
    assert fallback.tolist() == [[0.0, 45.0, 10.0, 10.0]] * 3


def test_classification_eval_is_deterministic_resize_and_centre_crop():
    aug = ClassificationAugment(8, MEAN, STD, train=False)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(
        aug(x), (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    )
    cropped = ClassificationAugment(16, [0.5], [0.5], train=False, crop_pct=0.5)
    y = torch.rand(3, 1, 40, 60)
    assert cropped(y).shape == (3, 1, 16, 16) and torch.equal(cropped(y), cropped(y))
    wide = torch.rand(2, 1, 10, 20)
    before = wide.clone()
    out = ClassificationAugment(10, [0.5], [0.5], train=False)(wide)  # a crop with no resize: a view
    assert torch.equal(wide, before) and torch.equal(out, (before[..., 5:15] - 0.5) / 0.5)
    assert aug.train().training and not aug.eval().training


def test_classification_from_spec_and_bad_input():
    spec = {"size": [28, 28], "channels": 1, "mean": [0.286], "std": [0.353], "interpolation": "bilinear"}
    train = ClassificationAugment.from_spec(spec, train=True, scale=(0.5, 1.0))
    assert train.training and train.scale == (0.5, 1.0)
    assert train(torch.rand(5, 1, 28, 28)).shape == (5, 1, 28, 28)
    assert not ClassificationAugment.from_spec(spec, train=False).training
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 1, H, W\), got \(5, 3, 28, 28\)"):
        train(torch.rand(5, 3, 28, 28))
    with pytest.raises(ValueError, match="lacks std"):
        ClassificationAugment.from_spec({"size": 28, "mean": [0.5]}, train=True)


@pytest.mark.parametrize(
    ("strengths", "invariant"),
    [
        ((0.5, 0, 0, 0), "ratio"),  # brightness scales every pixel by one factor
        ((0, 0.5, 0, 0), "mean_grey"),  # contrast keeps the mean grey
        ((0, 0, 0.8, 0), "grey"),  # saturation keeps each pixel's grey
        ((0, 0, 0, 0.4), "grey"),  # hue turns about the grey axis
    ],
)
def test_color_twist_steps(strengths, invariant):
    x = 0.3 + 0.3 * torch.rand(8, 3, 6, 6)  # mid-range: no clamping
    out = apply_color_twist(x, *sample_color_twist(x.mean(dim=(2, 3)), strengths))
    assert not torch.allclose(out, x)
    if invariant == "ratio":
        ratio = (out / x).flatten(1)
        torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio))
    elif invariant == "mean_grey":
        torch.testing.assert_close(_grey(out).mean(dim=(1, 2)), _grey(x).mean(dim=(1, 2)))
    else:
        torch.testing.assert_close(_grey(out), _grey(x), atol=1e-5, rtol=1e-5)


# --- images with masks ----------------------------------------------------------------------------------


def _disc(b: int, h: int, w: int, centres: torch.Tensor, radius: float) -> torch.Tensor:
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dist2 = (rows - centres[:, 0, None, None]) ** 2 + (cols - centres[:, 1, None, None]) ** 2
    return dist2 <= radius**2  # (B, H, W)


def _centroid(weights: torch.Tensor) -> torch.Tensor:
    """(B, *S) non-negative weights -> (B, len(S)) weighted mean index per axis."""
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in weights.shape[1:]], indexing="ij")
    total = weights.flatten(1).sum(1)
    return torch.stack([(weights * g).flatten(1).sum(1) / total for g in grids], dim=1)


@pytest.mark.parametrize("device", DEVICES)
def test_image_mask_labels_follow_the_image(device):
    b, h, w = 8, 48, 48
    centres = 16 + 16 * torch.rand(b, 2)
    disc = _disc(b, h, w, centres, 5.0)
    images = disc[:, None].float().expand(b, 3, h, w).contiguous().to(device)
    masks = (2 * disc).to(torch.int32).to(device)  # label 2 inside, 0 outside
    aug = ImageMaskAugment(
        size=40,
        scale=(0.8, 1.0),
        degrees=40,
        translate=(0.05, 0.05),
        p_affine=1.0,
        vflip=True,
        color_jitter=0.0,
    )
    out, labels = aug(images, masks, generator=11)
    assert out.device == images.device and labels.device == masks.device
    assert labels.dtype == torch.int32 and labels.shape == (b, 40, 40)
    assert set(labels.unique().tolist()) <= {0, 2}
    label_centre = _centroid((labels == 2).float().cpu())
    image_centre = _centroid(out[:, 0].clamp_min(0).cpu())
    assert (label_centre - image_centre).norm(dim=1).max() < 1.0
    moved = (label_centre - centres * 40 / 48).norm(dim=1)
    assert moved.max() > 2  # the augmentation did move the discs


def test_image_mask_fill_layout_seed_and_eval():
    aug = ImageMaskAugment(degrees=90, p_affine=1.0, mask_fill=255, color_jitter=(0.2, 0.2, 0.2, 0.05))
    images, masks = torch.rand(4, 3, 20, 20), torch.randint(0, 3, (4, 1, 20, 20))
    out, labels = aug(images, masks, generator=2)
    assert labels.shape == (4, 1, 20, 20) and labels.dtype == torch.int64
    assert set(labels.unique().tolist()) <= {0, 1, 2, 255} and (labels == 255).any()  # corners rotated in
    again = aug(images, masks, generator=2)
    assert torch.equal(out, again[0]) and torch.equal(labels, again[1])
    assert not torch.equal(out, aug(images, masks, generator=3)[0])
    aug.eval()
    assert aug(images, masks)[0] is images
    with pytest.raises(ValueError, match=r"integer masks of shape \(4, 20, 20\)"):
        aug(images, masks.float())


# --- volumes with label maps ----------------------------------------------------------------------------


def _blob_volume(b: int, size: int, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    axes = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij")
    dist2 = sum((g - centres[:, i, None, None, None]) ** 2 for i, g in enumerate(axes))
    volume = torch.exp(-dist2 / (2 * 2.5**2))[:, None]  # bright Gaussian blob, (B, 1, D, H, W)
    labels = (dist2 <= 4.0**2).to(torch.uint8) * 3  # label 3 inside a sphere, (B, D, H, W)
    return volume, labels


@pytest.mark.parametrize("device", DEVICES)
def test_volume_labels_follow_the_intensity(device):
    b, size = 4, 32
    centres = 10 + 12 * torch.rand(b, 3)
    volume, labels = _blob_volume(b, size, centres)
    aug = VolumeAugment3D(
        rotate_degrees=(30, 30, 30), scale=(0.85, 1.15), p_affine=1.0, p_gamma=0.0, p_noise=0.0, p_bias=0.0
    )
    out, lab = aug(volume.to(device), labels.to(device), generator=4)
    assert out.device.type == device and lab.device.type == device
    assert lab.dtype == torch.uint8 and lab.shape == labels.shape and set(lab.unique().tolist()) <= {0, 3}
    label_centre = _centroid((lab == 3).float().cpu())
    intensity_centre = _centroid(out[:, 0].cpu())
    assert (label_centre - intensity_centre).norm(dim=1).max() < 1.0
    # ...and both sit where the documented matrix sends the blob's centre.
    with seeded(4, torch.device(device)):
        matrix = aug.sample_matrix(b, (size,) * 3)
    predicted = (matrix[:, :3, :3] @ centres[:, :, None]).squeeze(-1) + matrix[:, :3, 3]
    assert (predicted - label_centre).norm(dim=1).max() < 1.0
    assert (predicted - centres).norm(dim=1).max() > 2  # it did move


def test_volume_flip_is_exact_and_intensity_spares_labels():
    volume, labels = torch.rand(2, 2, 6, 7, 8), torch.randint(0, 5, (2, 1, 6, 7, 8), dtype=torch.int32)
    flip_w = VolumeAugment3D(
        rotate_degrees=(0, 0, 0),
        scale=(1, 1),
        flip_axes=(2,),
        flip_p=1.0,
        p_affine=0.0,
        p_gamma=0.0,
        p_noise=0.0,
        p_bias=0.0,
    )
    out, lab = flip_w(volume, labels)
    assert torch.equal(lab, labels.flip(-1))
    torch.testing.assert_close(out, volume.flip(-1), atol=1e-5, rtol=1e-5)
    intensity = VolumeAugment3D(flip_p=0.0, p_affine=0.0, p_gamma=1.0, p_noise=1.0, p_bias=1.0)
    out, lab = intensity(volume, labels, generator=0)
    assert torch.equal(lab, labels) and not torch.allclose(out, volume)
    assert out.shape == volume.shape and out.dtype == volume.dtype


def test_volume_seeds_eval_and_bad_input():
    aug = VolumeAugment3D()
    volume, labels = torch.rand(2, 1, 12, 12, 12), torch.randint(0, 4, (2, 12, 12, 12))
    first, again, other = (
        aug(volume, labels, generator=9),
        aug(volume, labels, generator=9),
        aug(volume, labels, 10),
    )
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    image_only, none = aug(volume, generator=9)
    assert none is None and torch.equal(image_only, first[0])
    aug.eval()
    assert aug(volume, labels)[0] is volume
    with pytest.raises(
        ValueError,
        match=r"expects float volume of shape \(B, C, D, H, W\), got torch.float32 "
        r"\(3, 64, 64\)",
    ):
        aug(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r"integer labels of shape \(2, 12, 12, 12\)"):
        aug(volume, labels.float())


# --- multi-camera rigs ----------------------------------------------------------------------------------


def _random_rig(b: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on a ring around the ego origin, looking outwards, OpenCV axes; float64."""
    intrinsics = torch.tensor([[200.0, 0, 160], [0, 200.0, 120], [0, 0, 1]], dtype=torch.float64).repeat(
        b, n, 1, 1
    )
    cam_to_ego = torch.eye(4, dtype=torch.float64).repeat(b, n, 1, 1)
    for i in range(n):
        yaw = 2 * math.pi * i / n + 0.1 * torch.randn(b, dtype=torch.float64)
        forward = torch.stack([yaw.cos(), yaw.sin(), torch.zeros_like(yaw)], -1)
        right = torch.stack([yaw.sin(), -yaw.cos(), torch.zeros_like(yaw)], -1)
        down = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand(b, 3)
        cam_to_ego[:, i, :3, :3] = torch.stack([right, down, forward], dim=-1)  # columns: camera axes in ego
        cam_to_ego[:, i, :3, 3] = 1.5 * forward + torch.tensor([0.0, 0.0, 1.6], dtype=torch.float64)
    return intrinsics, cam_to_ego


def _project(intrinsics, cam_to_ego, points):
    """(B, N, 3, 3), (B, N, 4, 4), (B, M, 3) -> pixels (B, N, M, 2) and depth (B, N, M)."""
    homogeneous = torch.cat([points, torch.ones_like(points[..., :1])], -1)  # (B, M, 4)
    cam = (torch.linalg.inv(cam_to_ego)[:, :, None] @ homogeneous[:, None, :, :, None])[..., :3, 0]
    pix = (intrinsics[:, :, None] @ cam[..., None])[..., 0]
    return pix[..., :2] / pix[..., 2:], cam[..., 2]


@pytest.mark.parametrize("device", DEVICES)
def test_rig_projection_and_bev_labels_stay_consistent(device):
    b, n, cells = 3, 6, 50
    intrinsics, cam_to_ego = _random_rig(b, n)
    points = torch.empty(b, 40, 3, dtype=torch.float64).uniform_(-20, 20)
    points[..., 2] = torch.empty(b, 40, dtype=torch.float64).uniform_(0, 3)
    # BEV labels: 5 m x 5 m blocks with distinct labels; the points are placed at block centres.
    labels = torch.arange(100).view(10, 10).repeat_interleave(5, 0).repeat_interleave(5, 1).expand(b, -1, -1)
    points[..., :2] = (points[..., :2] / 5).floor() * 5 + 2.5
    images = torch.rand(b, n, 3, 24, 32)
    aug = RigAugment(rotate_degrees=30, flip_p=0.5, scale=(0.9, 1.1), bev_range=((-25, 25), (-25, 25)))
    out = aug(
        images.to(device),
        intrinsics.to(device),
        cam_to_ego.to(device),
        labels.to(device),
        points.to(device),
        generator=5,
    )
    for value in out:
        assert value.device.type == device
    out = type(out)(*[v.cpu() for v in out])

    before, depth = _project(intrinsics, cam_to_ego, points)
    after, _ = _project(out.intrinsics, out.cam_to_ego, out.points)
    visible = depth > 0.5
    torch.testing.assert_close(after[visible], before[visible], rtol=1e-4, atol=1e-4 * 320)
    torch.testing.assert_close(out.points, (out.ego_transform[:, None, :3, :3] @ points[..., None])[..., 0])

    def cell(p):  # ego (x, y) -> BEV (row, column), rows along x, columns along y, 1 m cells
        return ((p[..., 0] + 25).floor().long(), (p[..., 1] + 25).floor().long())

    rows, cols = cell(out.points)
    inside = (rows >= 0) & (rows < cells) & (cols >= 0) & (cols < cells)
    batch = torch.arange(b)[:, None].expand_as(rows)
    r0, c0 = cell(points)
    assert inside.float().mean() > 0.5
    assert torch.equal(
        out.bev_labels[batch[inside], rows[inside], cols[inside]],
        labels[batch[inside], r0[inside], c0[inside]],
    )
    assert out.bev_labels.dtype == labels.dtype


def test_rig_transform_structure_photometric_seed_and_eval():
    b, n = 64, 2
    intrinsics, cam_to_ego = _random_rig(b, n)
    images, labels = torch.rand(b, n, 3, 8, 8), torch.randint(0, 4, (b, 20, 20), dtype=torch.int16)
    aug = RigAugment(rotate_degrees=20, flip_p=0.5, scale=(0.9, 1.1), label_fill=-1)
    out = aug(images, intrinsics, cam_to_ego, labels, generator=1)
    linear = out.ego_transform[:, :3, :3]
    scale = linear.det().abs() ** (1 / 3)
    assert ((scale > 0.9 - 1e-6) & (scale < 1.1 + 1e-6)).all()
    assert (linear.det() < 0).any() and (linear.det() > 0).any()  # flipped and not
    torch.testing.assert_close(
        linear.transpose(1, 2) @ linear, scale[:, None, None] ** 2 * torch.eye(3).expand(b, 3, 3)
    )
    assert out.intrinsics is intrinsics and out.points is None
    assert set(out.bev_labels.unique().tolist()) <= {-1, 0, 1, 2, 3} and out.bev_labels.dtype == torch.int16
    assert out.images.min() >= 0 and out.images.max() <= 1
    ratio = (out.images / images).mean(dim=(2, 3, 4))
    assert (ratio[:, 0] - ratio[:, 1]).abs().max() > 1e-3  # each camera has its own colour jitter
    again = aug(images, intrinsics, cam_to_ego, labels, generator=1)
    assert all(torch.equal(x, y) for x, y in zip(out, again) if x is not None)
    plain = RigAugment(photometric=False)(images, intrinsics, cam_to_ego, labels, generator=1)
    assert torch.equal(plain.images, images)
    aug.eval()
    assert aug(images, intrinsics, cam_to_ego, labels).cam_to_ego is cam_to_ego
    with pytest.raises(ValueError, match=r"expects cam_to_ego of shape \(64, 2, 4, 4\)"):
        aug(images, intrinsics, cam_to_ego[..., :3, :], labels)
