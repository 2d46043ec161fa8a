"""Small helpers shared by every part of zoo: paths, hashing, atomic writes, input checks.

Kept free of heavy imports (torch is imported lazily) so that `import zoo` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    """Where real data sets are read from: `ZOO_DATA`, else `~/.cache/zoo/data`.

    Nothing is ever copied from here into the repository; readers take paths below it
    (e.g. `data_root() / "planetoid"`) and fall back to the library's usual download.
    """
    env = os.environ.get("ZOO_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zoo" / "data"


def cache_dir(name: str) -> Path:
    """A writable folder for generated or processed data: `ZOO_CACHE`, else `$XDG_CACHE_HOME/zoo`
    (`~/.cache/zoo`), else the system temp dir; `name` is the sub-folder. Never the data root,
    which is read-only input.
    """
    env = os.environ.get("ZOO_CACHE")
    bases = [Path(env).expanduser()] if env else []
    bases += [Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zoo",
              Path(tempfile.gettempdir()) / "zoo_cache"]
    for base in bases:
        folder = base / name
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder
    raise OSError(f"no writable cache folder for {name!r} (tried {', '.join(str(b) for b in bases)}); set ZOO_CACHE")


def read_json_listing(path: str | os.PathLike, key: str) -> dict:
    """A JSON object whose `key` holds a non-empty list (a scene's frames, a data set's samples).

    Raises ValueError naming the file for invalid JSON or a missing/empty list.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or not isinstance(doc.get(key), list) or not doc[key]:
        raise ValueError(f"{path}: expected an object with a non-empty list under key {key!r}")
    return doc


def bundled_dir(name: str) -> Path:
    """`recipes` or `weights` shipped with zoo: the source tree's top level, else the wheel's copy."""
    source = REPO_ROOT / name
    if source.is_dir():
        return source
    return Path(__file__).resolve().parent / "_bundled" / name


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to `path`; on success it replaces `path` in one rename.

    A crash (even SIGKILL) leaves either the old file or the new one, never a half-written one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; the result gets a normal file's mode
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:  # data on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_tensor(
    x: Any,
    name: str,
    shape: Sequence[int | str | None],
    *,
    dtype: str = "float",
    owner: str = "model",
) -> None:
    """Raise a ValueError naming the expected layout when `x` does not match it.

    `shape` lists one entry per dimension: an int demands that size, a str (e.g. "B", "H")
    or None accepts any size. `dtype` is "float", "int", "bool" or "any".
    Example: check_tensor(x, "x", ("B", 3, "H", "W")) -> "cnn expects x of shape (B, 3, H, W) ...".
    """
    import torch

    want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{owner} expects {name} as a torch.Tensor of shape {want}, got {type(x).__name__}")
    bad_shape = x.ndim != len(shape) or any(
        isinstance(s, int) and x.shape[i] != s for i, s in enumerate(shape)
    )
    if bad_shape:
        raise ValueError(f"{owner} expects {name} of shape {want}, got {tuple(x.shape)}")
    ok = {
        "float": x.is_floating_point(),
        "int": not x.is_floating_point() and not x.is_complex() and x.dtype != torch.bool,
        "bool": x.dtype == torch.bool,
        "any": True,
    }[dtype]
    if not ok:
        raise ValueError(f"{owner} expects {name} with a dtype of kind {dtype!r}, got {x.dtype} (shape {want})")
