"""The zoo command: tables, info, verify, recipes, errors without stack traces."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from zoo.cli import main

TOY = "tests/example_family/recipes/toy.yaml"


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("list", "info", "download", "verify", "train", "eval", "finetune", "reproduce", "predict",
                "publish", "push", "tour", "recipes", "cat", "cp"):
        assert cmd in out


def test_list_and_info(capsys):
    assert main(["list", "toy*"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "family", "task", "default", "weights", "description"]
    assert "toy_mlp" in out
    assert main(["list", "--pretrained"]) == 0
    capsys.readouterr()
    assert main(["info", "toy_mlp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["default_tag"] == "toy_mlp.blobs"


def test_verify_exit_code(capsys):
    assert main(["verify"]) == 0


def test_cat_and_cp(capsys, tmp_path):
    assert main(["cat", TOY, "train.epochs=2"]) == 0
    assert "epochs: 2" in capsys.readouterr().out
    assert main(["cp", TOY, str(tmp_path)]) == 0
    assert (tmp_path / "toy.yaml").is_file()


def test_errors_are_one_line(capsys):
    assert main(["info", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo info: error: unknown model 'no_such_model'") and "Traceback" not in err
    assert main(["train", TOY, "train.epohcs=1"]) == 2
    assert "did you mean 'train.epochs'" in capsys.readouterr().err


def test_train_eval_json_predict_flow(tmp_path, capsys):
    assert main(["train", TOY, "train.epochs=1", "--runs", str(tmp_path)]) == 0
    run_dir = next(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["eval", str(run_dir), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == {"accuracy", "loss"}


def test_python_dash_m_zoo():
    out = subprocess.run([sys.executable, "-m", "zoo", "list"], capture_output=True, text=True)
    assert out.returncode == 0 and "model" in out.stdout


def test_overrides_may_follow_options(tmp_path, capsys):
    assert main(["train", TOY, "--runs", str(tmp_path), "train.epochs=1", "~train.log_every"]) == 0
    run_dir = next(tmp_path.iterdir())
    assert run_dir.name.startswith("toy-")
    card = json.loads((run_dir / "model" / "config.json").read_text())
    assert card["tag"] == "toy_mlp.blobs"  # the recipe's weights section names the tag
    with pytest.raises(SystemExit):
        main(["train", TOY, "--no-such-option"])
    capsys.readouterr()
    # A run dir is verified against its own config.json, whatever tag it carries.
    assert main(["eval", str(run_dir), "--json", "train.log_every=5"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_publish_to_a_folder_then_load_it_by_tag(tmp_path, capsys, monkeypatch):
    assert main(["train", TOY, "train.epochs=1", "--runs", str(tmp_path / "runs")]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    assert main(["publish", str(run_dir), "--tag", "toy_mlp.mine", "--to", str(tmp_path / "w")]) == 0
    folder = tmp_path / "w" / "toy_mlp.mine"
    assert capsys.readouterr().out.strip() == str(folder)
    assert json.loads((folder / "config.json").read_text())["tag"] == "toy_mlp.mine"
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "w"))
    assert main(["verify"]) == 0 and "toy_mlp.mine" in capsys.readouterr().out
    assert main(["eval", "toy_mlp.mine", "--json"]) == 0
    assert "accuracy" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
