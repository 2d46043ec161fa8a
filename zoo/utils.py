"""Small helpers shared by every part of zoo: paths, names, hashing, atomic writes, input checks.

Kept free of heavy imports (torch is imported lazily) so that `import zoo` stays light.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent

# One grammar for every name a user or a file supplies (tags, run names, repo ids, revisions, file names):
# letters, digits and "._-", starting with a letter or digit, no "..". A "/" separates segments only where
# the Hub's own grammar has them (repo ids "org/name", revisions such as "refs/pr/1").
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class BadNameError(ValueError):
    """A tag, run name, repo id or revision outside zoo's name grammar, or a write outside its folder."""


def check_name(value: Any, what: str = "name", *, slashes: int | None = 0) -> str:
    """`value` if it follows the name grammar, else a BadNameError naming `what` and the rule.

    slashes: how many "/" separators are allowed (0 for tags and run names, 1 for repo ids, None for any
    number, as in a git revision). Never a path: no leading "/", no "..", no empty or "." segment.
    """
    segments = value.split("/") if isinstance(value, str) else []
    ok = bool(segments) and (slashes is None or len(segments) - 1 == slashes)
    if not ok or not all(_SEGMENT.fullmatch(seg) and ".." not in seg for seg in segments):
        shape = {0: "", 1: " of the form 'org/name'"}.get(slashes, " ('/'-separated segments)")
        raise BadNameError(f"invalid {what} {value!r}: expected letters, digits, '.', '_' or '-'{shape}, "
                           "starting with a letter or digit, without '..' (names are data, never paths)")
    return value


def safe_join(root: str | os.PathLike, *names: str, what: str = "name") -> Path:
    """`root/names...` after checking each name against the grammar and that the result stays inside root."""
    root = Path(root)
    for name in names:
        check_name(name, what)
    path = root.joinpath(*names)
    if not path.resolve().is_relative_to(root.resolve()):  # a symlink inside root pointing out of it
        raise BadNameError(f"refused to write {path}: it resolves outside {root}")
    return path


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


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file holding an object; ValueError naming the file when it is unreadable, invalid or not an object."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, got a JSON {type(doc).__name__}")
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


def remove_stale_temporaries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Remove the `.<name>.*.tmp` files that `atomic_path` writes which a kill interrupted (on the next start)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in (folder.rglob if recursive else folder.glob)(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_tensor(x: Any, name: str, shape, *, dtype: str = "float", owner: str = "model", like: Any = None):
    """The shared input contract (zoo.blocks.contract.check_input); kept here for existing import sites."""
    from .blocks.contract import check_input

    return check_input(x, name, shape, dtype=dtype, owner=owner, like=like)


def text_table(rows: list[list], header: list[str]) -> str:
    """A plain-text table (columns padded, a dashed rule under the header) for the CLI and the tour."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
