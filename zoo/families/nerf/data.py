"""Scenes for novel-view synthesis: posed images in the Blender and nerfstudio formats, a procedural
scene generator, and the camera helpers (look-at, orbits) the task and the generator share.

Formats (both use the OpenGL/Blender camera convention: the camera looks down -z, y is up,
`transform_matrix` is camera-to-world):

  Blender synthetic   ROOT/transforms_{train,val,test}.json with `camera_angle_x` (horizontal field of
                      view, radians) and frames [{file_path: "./train/r_0", transform_matrix: 4x4}];
                      file_path has no extension (".png" is added); RGBA PNGs, alpha = coverage.
  nerfstudio          ROOT/transforms.json with intrinsics `fl_x`, `fl_y`, `cx`, `cy`, `w`, `h` at the top
                      level or per frame, frames [{file_path: "images/frame_00001.jpg", transform_matrix}];
                      RGB or RGBA images. Lens distortion (k1, k2, p1, p2) is not modelled.

Every reader validates up front and raises ValueError naming the file and what is wrong: a missing
JSON key, missing images, poses that are not finite rigid 4x4 matrices, images of different sizes.
Images are kept as premultiplied RGB + alpha (V, H, W, 4) in [0, 1], so compositing on any
background is `rgb + (1 - alpha) * background` and area downsampling stays exact at the edges.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.utils import read_json_listing

BLENDER_FOV_X = 0.6911112070083618  # camera_angle_x of the NeRF synthetic scenes
ROTATION_TOLERANCE = 1e-3  # max |R^T R - I| and |det R - 1| of a rigid camera rotation


@dataclass
class Scene:
    """Posed images of one scene.

    Shapes:
        - images: (V, H, W, 4) float32, premultiplied RGB and alpha in [0, 1]
        - c2w: (V, 4, 4) float32 camera-to-world (OpenGL: camera looks down -z, y up)
        - intrinsics: (V, 4) float32 fx, fy, cx, cy in pixels of `images`
    """

    images: torch.Tensor
    c2w: torch.Tensor
    intrinsics: torch.Tensor
    names: list[str]
    source: str = ""

    def __len__(self) -> int:
        return len(self.images)

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    def subset(self, index) -> Scene:
        index = torch.as_tensor(index, dtype=torch.long)
        return replace(self, images=self.images[index], c2w=self.c2w[index], intrinsics=self.intrinsics[index],
                       names=[self.names[i] for i in index.tolist()])

    def resized(self, long_side: int | None) -> Scene:
        """The scene with its longer image side at `long_side` pixels (area averaging, intrinsics scaled)."""
        h, w = self.height, self.width
        if long_side is None or long_side == max(h, w):
            return self
        scale = long_side / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        # Area averaging of premultiplied RGBA is what a camera with bigger pixels would record.
        mode = "area" if size[0] <= h else "bilinear"
        images = F.interpolate(self.images.permute(0, 3, 1, 2), size=size, mode=mode)
        sx, sy = size[1] / w, size[0] / h
        intrinsics = self.intrinsics * torch.tensor([sx, sy, sx, sy])
        return replace(self, images=images.permute(0, 2, 3, 1).contiguous(), intrinsics=intrinsics)

    def composite(self, background=(1.0, 1.0, 1.0)) -> torch.Tensor:
        """(V, H, W, 3) images composited on a background colour."""
        bg = torch.as_tensor(background, dtype=torch.float32)
        return self.images[..., :3] + (1 - self.images[..., 3:]) * bg


# --------------------------------------------------------------------------- cameras


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """(4, 4) camera-to-world matrix of a camera at `eye` looking at `target` (OpenGL convention)."""
    eye, target, up = (torch.as_tensor(v, dtype=torch.float32) for v in (eye, target, up))
    back = F.normalize(eye - target, dim=0)  # the camera looks down its -z axis
    right = F.normalize(torch.linalg.cross(up, back), dim=0)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.stack((right, torch.linalg.cross(back, right), back), dim=1)
    c2w[:3, 3] = eye
    return c2w


def orbit_poses(n: int, radius: float, elevation_deg: float = 30.0, target=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """(n, 4, 4) cameras evenly spaced on a circle around the z axis (a turntable), looking at `target`."""
    elev = math.radians(elevation_deg)
    poses = []
    for k in range(n):
        azim = 2 * math.pi * k / n
        eye = torch.tensor([math.cos(azim) * math.cos(elev), math.sin(azim) * math.cos(elev), math.sin(elev)])
        poses.append(look_at(eye * radius + torch.tensor(target), target))
    return torch.stack(poses)


def check_pose(matrix, where: str) -> torch.Tensor:
    """A float32 (4, 4) rigid camera-to-world matrix, or ValueError naming `where` and the problem."""
    try:
        m = torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: transform_matrix is not a numeric 4x4 matrix ({e})") from e
    if m.shape != (4, 4):
        raise ValueError(f"{where}: transform_matrix must be 4x4, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError(f"{where}: transform_matrix has non-finite entries")
    if not torch.allclose(m[3], torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=m.dtype), atol=1e-6):
        raise ValueError(f"{where}: transform_matrix's last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    rot = m[:3, :3]
    err = (rot.T @ rot - torch.eye(3, dtype=m.dtype)).abs().max().item()
    det = torch.linalg.det(rot).item()
    if err > ROTATION_TOLERANCE or abs(det - 1) > ROTATION_TOLERANCE:
        raise ValueError(f"{where}: transform_matrix's rotation is not rigid (max |R^T R - I| = {err:.2g}, "
                         f"det R = {det:.4g}; scaled, sheared or mirrored cameras are not supported)")
    return m.float()


# --------------------------------------------------------------------------- readers


def _load_json(path: Path) -> dict:
    return read_json_listing(path, "frames")


def find_transforms(root: str | Path, split: str = "train") -> Path:
    """The transforms file of a scene folder (Blender's transforms_<split>.json, else nerfstudio's
    transforms.json), or the file itself when `root` is a .json file."""
    root = Path(root).expanduser()
    if root.is_file():
        return root
    if not root.is_dir():
        raise ValueError(f"scene folder {root} does not exist")
    for name in (f"transforms_{split}.json", "transforms.json"):
        if (root / name).is_file():
            return root / name
    raise ValueError(f"{root}: no transforms_{split}.json (Blender format) or transforms.json (nerfstudio format)")


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 4) float32 premultiplied RGBA in [0, 1] of any image PIL reads (RGB gets alpha 1)."""
    from PIL import Image

    with Image.open(path) as im:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32) / 255.0
    rgba[..., :3] *= rgba[..., 3:]  # premultiply
    return rgba


def _number(meta: dict, key: str, where: str) -> float:
    value = meta.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{where}: missing or non-numeric key {key!r}")
    return float(value)


@dataclass
class Cameras:
    """The poses of a transforms file without its pixels: what rendering given poses needs.

    Shapes:
        - c2w: (V, 4, 4); intrinsics: (V, 4) fx, fy, cx, cy in pixels of a width x height image
    """

    c2w: torch.Tensor
    intrinsics: torch.Tensor
    width: int | None
    height: int | None
    files: list[Path]
    source: Path


def read_cameras(path: str | Path, split: str = "train", width: int | None = None,
                 check_images: bool = False) -> Cameras:
    """Poses and intrinsics of a Blender or nerfstudio transforms file (detected by its keys).

    The image size comes from the file (nerfstudio's `w`, `h`), else from the first image, else
    from `width` (square images; a Blender file only gives the field of view).
    Raises ValueError naming the file and frame for a missing key or a malformed pose, and with
    `check_images` for missing images or images of different sizes (read from their headers).
    """
    json_path = find_transforms(path, split)
    meta = _load_json(json_path)
    nerfstudio = "fl_x" in meta or "fl_x" in meta["frames"][0]
    if not nerfstudio and "camera_angle_x" not in meta:
        raise ValueError(f"{json_path}: neither 'camera_angle_x' (Blender format) nor 'fl_x' (nerfstudio format)")
    files, poses, intr = [], [], []
    for i, frame in enumerate(meta["frames"]):
        where = f"{json_path} frame {i}"
        if not isinstance(frame, dict) or "file_path" not in frame or "transform_matrix" not in frame:
            raise ValueError(f"{where}: each frame needs 'file_path' and 'transform_matrix'")
        file = json_path.parent / frame["file_path"]
        if not nerfstudio and file.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            file = file.with_name(file.name + ".png")  # Blender's file paths have no extension
        files.append(file)
        poses.append(check_pose(frame["transform_matrix"], where))
        if nerfstudio:  # per-frame intrinsics override the shared ones
            cam = {**meta, **frame}
            intr.append([_number(cam, k, where) for k in ("fl_x", "fl_y", "cx", "cy")])
    w, h = (int(meta["w"]), int(meta["h"])) if nerfstudio and "w" in meta and "h" in meta else (None, None)
    if check_images:
        _check_images(json_path, files, (w, h) if w is not None else None)
    if w is None and files[0].is_file():
        w, h = _image_sizes(files[:1])[0]
    if w is None and width is not None:
        w = h = width
    if nerfstudio:
        if any(abs(float(meta.get(k, 0.0))) > 0 for k in ("k1", "k2", "k3", "p1", "p2")):
            import logging

            logging.getLogger("zoo").warning("zoo: %s has lens distortion coefficients; zoo's cameras are "
                                             "pinhole, undistort the images for best results", json_path)
        intrinsics = torch.tensor(intr, dtype=torch.float32)
    elif w is not None:
        focal = 0.5 * w / math.tan(0.5 * _number(meta, "camera_angle_x", str(json_path)))
        intrinsics = torch.tensor([[focal, focal, w / 2, h / 2]] * len(files), dtype=torch.float32)
    else:
        raise ValueError(f"{json_path}: no image found to tell the image size ({files[0]}); pass a width")
    return Cameras(torch.stack(poses), intrinsics, w, h, files, json_path)


def read_scene(path: str | Path, split: str = "train") -> Scene:
    """Read a scene folder or transforms file in the Blender or nerfstudio format, with its images.

    Raises ValueError naming the file for a missing key, missing images, malformed poses or images
    of different sizes; every image is checked before any is decoded.
    """
    cams = read_cameras(path, split, check_images=True)
    json_path, files = cams.source, cams.files
    images = torch.from_numpy(np.stack([read_image(f) for f in files]))
    names = [str(f.relative_to(json_path.parent)) for f in files]
    return Scene(images, cams.c2w, cams.intrinsics, names, str(json_path))


def _check_images(json_path: Path, files: list[Path], size: tuple[int, int] | None) -> None:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ValueError(f"{json_path}: {len(missing)} image(s) missing: {', '.join(missing[:5])}{more}")
    sizes = _image_sizes(files)
    expected = size or sizes[0]
    odd = next((i for i, s in enumerate(sizes) if s != expected), None)
    if odd is not None:
        said = f"{files[0]} is" if size is None else "'w' x 'h' in the file say"
        said += f" {expected[0]}x{expected[1]}"
        raise ValueError(f"{json_path}: images have inconsistent sizes: {said} but {files[odd]} is "
                         f"{sizes[odd][0]}x{sizes[odd][1]} (W x H)")


def _image_sizes(files: list[Path]) -> list[tuple[int, int]]:
    """(W, H) of each image from its header, without decoding the pixels."""
    from PIL import Image

    sizes = []
    for f in files:
        try:
            with Image.open(f) as im:
                sizes.append(im.size)
        except OSError as e:
            raise ValueError(f"{f}: not a readable image ({e})") from e
    return sizes


def write_blender(scene: Scene, out_dir: str | Path, split: str = "train") -> Path:
    """Write `scene` in the Blender format (transforms_<split>.json + RGBA PNGs under <split>/)."""
    from PIL import Image

    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    fx, w = float(scene.intrinsics[0, 0]), scene.width
    frames = []
    for i, (image, c2w) in enumerate(zip(scene.images, scene.c2w)):
        alpha = image[..., 3:]
        straight = torch.where(alpha > 0, image[..., :3] / alpha.clamp_min(1e-8), torch.zeros(()))
        rgba = torch.cat((straight.clamp(0, 1), alpha), -1)
        Image.fromarray((rgba.numpy() * 255 + 0.5).astype(np.uint8), "RGBA").save(out_dir / split / f"r_{i}.png")
        frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": c2w.tolist()})
    path = out_dir / f"transforms_{split}.json"
    path.write_text(json.dumps({"camera_angle_x": 2 * math.atan(0.5 * w / fx), "frames": frames}, indent=1))
    return path


# --------------------------------------------------------------------------- procedural scenes


def _procedural_objects(seed: int):
    """Three spheres and two axis-aligned boxes with distinct colours inside [-1, 1]^3."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.tensor([[0.9, 0.2, 0.2], [0.2, 0.7, 0.3], [0.2, 0.4, 0.9], [0.95, 0.8, 0.2], [0.7, 0.3, 0.8]])
    colours = palette[torch.randperm(5, generator=g)]
    spheres = [(torch.rand(3, generator=g) * 1.2 - 0.6, 0.25 + 0.2 * float(torch.rand((), generator=g)), colours[i])
               for i in range(3)]
    boxes = []
    for i in range(2):
        centre = torch.rand(3, generator=g) * 1.0 - 0.5
        half = 0.15 + 0.25 * torch.rand(3, generator=g)
        boxes.append((centre - half, centre + half, colours[3 + i]))
    return spheres, boxes


def _trace(origins: torch.Tensor, dirs: torch.Tensor, spheres, boxes) -> torch.Tensor:
    """(N, 4) premultiplied RGBA of rays hitting the analytic objects, Lambertian under a fixed light."""
    n = len(origins)
    best = torch.full((n,), float("inf"))
    normal = torch.zeros(n, 3)
    albedo = torch.zeros(n, 3)
    for centre, radius, colour in spheres:  # |o + t d - c|^2 = r^2 with |d| = 1
        oc = origins - centre
        b = (oc * dirs).sum(-1)
        disc = b * b - ((oc * oc).sum(-1) - radius * radius)
        t = -b - disc.clamp_min(0).sqrt()
        hit = (disc > 0) & (t > 0) & (t < best)
        best = torch.where(hit, t, best)
        normal[hit] = F.normalize(oc[hit] + t[hit, None] * dirs[hit], dim=-1)
        albedo[hit] = colour
    for lo, hi, colour in boxes:  # slab test; the entry face gives the normal
        inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        t0, t1 = (lo - origins) * inv, (hi - origins) * inv
        t_near, axis = torch.minimum(t0, t1).max(-1)
        t_far = torch.maximum(t0, t1).min(-1).values
        hit = (t_near < t_far) & (t_near > 0) & (t_near < best)
        best = torch.where(hit, t_near, best)
        face = torch.zeros(n, 3)
        face[torch.arange(n), axis] = -torch.sign(dirs[torch.arange(n), axis])
        normal[hit] = face[hit]
        albedo[hit] = colour
    light = F.normalize(torch.tensor([0.5, -0.3, 1.0]), dim=0)
    shade = 0.35 + 0.65 * (normal @ light).clamp_min(0)
    alpha = torch.isfinite(best).float()
    return torch.cat((albedo * shade[:, None] * alpha[:, None], alpha[:, None]), -1)


def make_procedural_scene(out_dir: str | Path, n_views: int = 40, size: int = 100, seed: int = 0,
                          supersample: int = 2) -> Path:
    """Ray-trace a few coloured spheres and boxes from `n_views` cameras on the upper hemisphere
    (radius 4, random azimuth and elevation at `seed`) and write them in the Blender format.

    The objects lie inside [-1, 1]^3 and the field of view is the NeRF synthetic one, so the scene
    works with the lego recipe's settings. Each pixel averages `supersample`^2 rays (anti-aliased
    alpha at the edges). Returns the folder.
    """
    spheres, boxes = _procedural_objects(seed)
    g = torch.Generator().manual_seed(seed + 1)
    focal = 0.5 * size / math.tan(0.5 * BLENDER_FOV_X)
    s = supersample
    # sub-pixel offsets of a regular s x s pattern inside each pixel
    jj, ii = torch.meshgrid(torch.arange(size * s), torch.arange(size * s), indexing="ij")
    x = ((ii + 0.5) / s - size / 2) / focal
    y = -((jj + 0.5) / s - size / 2) / focal
    cam_dirs = torch.stack((x, y, -torch.ones_like(x)), -1).reshape(-1, 3)
    images, poses = [], []
    for _ in range(n_views):
        azim = 2 * math.pi * float(torch.rand((), generator=g))
        elev = math.radians(15 + 55 * float(torch.rand((), generator=g)))
        eye = 4.0 * torch.tensor([math.cos(azim) * math.cos(elev), math.sin(azim) * math.cos(elev), math.sin(elev)])
        c2w = look_at(eye)
        dirs = F.normalize(cam_dirs @ c2w[:3, :3].T, dim=-1)
        rgba = _trace(c2w[:3, 3].expand_as(dirs), dirs, spheres, boxes).reshape(size * s, size * s, 4)
        images.append(F.avg_pool2d(rgba.permute(2, 0, 1)[None], s)[0].permute(1, 2, 0))
        poses.append(c2w)
    intrinsics = torch.tensor([[focal, focal, size / 2, size / 2]] * n_views)
    scene = Scene(torch.stack(images), torch.stack(poses), intrinsics, [f"r_{i}" for i in range(n_views)])
    write_blender(scene, out_dir)
    return Path(out_dir)
