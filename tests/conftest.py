"""Test set-up shared by every test file.

- The example family (tests/example_family) is loaded as a plug-in, as a third-party family would be.
- Real data is read from ZOO_DATA (CI points it at ../shared/data); tests that need a data set
  that is absent skip with the reason.
- Nothing reaches the network: HF_HUB_OFFLINE is on unless a test starts the local hub server.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("ZOO_PLUGINS", "tests.example_family.model")
os.environ.setdefault("ZOO_DATA", str((ROOT.parent / "shared" / "data").resolve()))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def data_or_skip(*parts: str) -> Path:
    """A path under ZOO_DATA, or skip the test naming what is missing."""
    path = Path(os.environ["ZOO_DATA"]).joinpath(*parts)
    if not path.exists():
        pytest.skip(f"data not available: {path} (set ZOO_DATA)")
    return path


@pytest.fixture
def run_env(tmp_path, monkeypatch):
    """Environment for subprocess runs of `python -m zoo`: repo root importable, runs in tmp."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    monkeypatch.chdir(tmp_path)
    return env
