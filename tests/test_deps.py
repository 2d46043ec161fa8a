"""Optional dependencies by domain: a family whose extra is missing names the `pip install "zoo[...]"` to run.

A missing library is simulated with `sys.modules[name] = None` (Python then refuses to import it).
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from zoo.cli import main
from zoo.deps import MissingExtra, require


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(MissingExtra, match=r'gymnasium is not installed: pip install "zoo\[rl\]"'):
        require("gymnasium", "rl")
    assert require("json", "rl").dumps([]) == "[]"


def _build_env():
    from zoo.families.dqn.data import build_env

    build_env("CartPole-v1")


def _save_nifti():
    from zoo.families.unet3d.data import save_nifti

    save_nifti("/nonexistent/x.nii.gz", np.zeros((2, 2, 2)), np.eye(4))


def _texture():
    from zoo.families.patchcore.data import _texture

    _texture("brick")


@pytest.mark.parametrize("module, extra, call", [("gymnasium", "rl", _build_env), ("nibabel", "medical", _save_nifti),
                                                 ("skimage", "anomaly", _texture)])
def test_import_sites_name_their_extra(module, extra, call, monkeypatch):
    for name in [m for m in list(sys.modules) if m == module or m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtra, match=rf'pip install "zoo\[{extra}\]"'):
        call()


def test_the_cli_says_it_in_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    assert main(["predict", "dqn.cartpole", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "zoo[rl]"' in err and "Traceback" not in err


def test_the_tour_skips_a_family_whose_extra_is_missing(monkeypatch, tmp_path, capsys):
    from zoo import registry
    from zoo.tour import tour

    monkeypatch.setattr(registry, "list_models", lambda *a, **k: ["dqn"])
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    assert tour(out=tmp_path / "tour") == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("dqn "))
    assert 'skipped: gymnasium is not installed: pip install "zoo[rl]"' in row
