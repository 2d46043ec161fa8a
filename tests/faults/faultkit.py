"""Helpers the fault-injection tests import (`from faultkit import ...`). They live here, not in conftest.py:
tests/ has a conftest.py of its own, and two modules named `conftest` shadow each other under xdist."""

from __future__ import annotations

import os
from pathlib import Path

from zoo import weights as W


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file under `roots` with its size and mtime: compare two snapshots to prove nothing was written."""
    files = {}
    for root in roots:
        root = Path(root)
        if root.is_file():
            files[str(root)] = (root.stat().st_size, root.stat().st_mtime_ns)
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            for name in filenames + [d for d in dirnames if not os.listdir(os.path.join(dirpath, d))]:
                p = Path(dirpath, name)
                st = p.lstat()
                files[str(p)] = (st.st_size, st.st_mtime_ns)
    return files


def package_files() -> list[Path]:
    """What a command must never touch unless asked: the bundled weights and the card index."""
    return [W.bundled_weights_dir(), W.INDEX_PATH]


def assert_user_error(result, *needles: str) -> str:
    """Exit 2, exactly one line on stderr starting 'zoo VERB: error:' (argparse: its 'error:' line), no
    traceback, and every needle (the file, key or URL) named in it."""
    code, _, err = result
    assert code == 2, f"exit {code}, stderr: {err[-2000:]}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):  # argparse prints its usage line, then one error line
        lines = lines[1:]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert "error:" in lines[0], lines[0]
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not named in: {lines[0]}"
    return lines[0]
