"""(a) Every CLI verb against bad inputs: missing, corrupt or wrong-type files, bad overrides, bad numbers,
odd names. Each case: exit 2, one line naming the file/key/URL, no traceback, nothing written anywhere
(the workspace, the runs root, the package's weights and card index)."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from faultkit import assert_user_error, package_files, snapshot

import zoo
from zoo import weights as W
from zoo.engine import train

ROOT = Path(__file__).resolve().parents[2]
TOY = str(ROOT / "tests" / "example_family" / "recipes" / "toy.yaml")


def _folder(root: Path, name: str, tag: str) -> Path:
    torch.manual_seed(0)
    config = {"tag": tag, "task": "toy"}
    return W.save_pretrained(zoo.create("toy_mlp"), root / name, config=config)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A workspace of bad files next to one finished run."""
    ws = tmp_path_factory.mktemp("ws")
    run, _ = train(TOY, ["train.epochs=1"], runs_root=ws / "finished")
    shutil.move(str(run), ws / "run")
    shutil.rmtree(ws / "finished")
    (ws / "dup.yaml").write_text("task: toy\nmodel: {name: toy_mlp}\ntrain:\n  epochs: 1\n"
                                 "  epochs: 5\n")
    (ws / "list.yaml").write_text("- task\n- model\n")
    (ws / "bad.yaml").write_text("task: [unclosed\n")
    (ws / "tagged.yaml").write_text("task: !!python/object/apply:os.system ['echo pwned']\n")
    (ws / "latin1.yaml").write_bytes(b"task: caf\xe9\xff\xfe\n")
    (ws / "afile").write_text("not a folder\n")
    (ws / "emptydir").mkdir()
    listcfg = _folder(ws, "listcfg", "toy_mlp.listcfg")
    (listcfg / "config.json").write_text("[1, 2, 3]\n")
    nohash = _folder(ws, "nohash", "toy_mlp.nohash")
    cfg = json.loads((nohash / "config.json").read_text())
    del cfg["files"]
    (nohash / "config.json").write_text(json.dumps(cfg))
    flipped = _folder(ws, "flipped", "toy_mlp.flipped")
    data = bytearray((flipped / W.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (flipped / W.WEIGHTS_FILE).write_bytes(bytes(data))
    pickled = _folder(ws, "pickled", "toy_mlp.pickled")
    (pickled / W.WEIGHTS_FILE).write_bytes(pickle.dumps({"w": [1.0]}))
    evil = ws / "evilrun"
    shutil.copytree(ws / "run", evil)
    cfg = json.loads((evil / "model" / "config.json").read_text())
    cfg["tag"] = "../../victim/."
    (evil / "model" / "config.json").write_text(json.dumps(cfg))
    listrun = ws / "listrun"
    shutil.copytree(ws / "run", listrun)
    (listrun / "result.json").write_text("[]\n")
    return ws


W_ = "{ws}"  # placeholder for the workspace in the table below

CASES = [  # (id, args, words the error line must contain)
    ("info-unknown", ["info", "no_such_model"], ["no_such_model"]),
    ("info-unknown-tag", ["info", "cnn.nope"], ["cnn.nope"]),
    ("info-traversal", ["info", "../../etc/passwd"], ["../../etc/passwd"]),
    ("download-unknown", ["download", "cnn.nope"], ["cnn.nope"]),
    ("download-traversal-tag", ["download", "../../victim/.x"], ["../../victim/.x"]),
    ("download-bad-repo", ["download", "hf-hub:../x"], ["../x"]),
    ("download-bad-revision", ["download", "hf-hub:org/repo@../../x"], ["../../x"]),
    ("download-to-a-file", ["download", "cnn", "--to", f"{W_}/afile/sub"], ["afile"]),
    ("verify-unknown", ["verify", "cnn.nope"], ["cnn.nope"]),
    ("verify-missing-folder", ["verify", f"{W_}/missing"], ["missing"]),
    ("cat-missing", ["cat", "no/such"], ["no/such"]),
    ("cat-duplicate-key", ["cat", f"{W_}/dup.yaml"], ["dup.yaml", "duplicate key 'epochs'"]),
    ("cat-yaml-list", ["cat", f"{W_}/list.yaml"], ["list.yaml", "mapping"]),
    ("cat-invalid-yaml", ["cat", f"{W_}/bad.yaml"], ["bad.yaml"]),
    ("cat-python-tag", ["cat", f"{W_}/tagged.yaml"], ["tagged.yaml"]),
    ("cat-not-utf8", ["cat", f"{W_}/latin1.yaml"], ["latin1.yaml"]),
    ("cat-batch-0", ["cat", TOY, "train.batch_size=0"], ["train.batch_size", ">= 1"]),
    ("cat-batch-negative", ["cat", TOY, "train.batch_size=-5"], ["train.batch_size"]),
    ("cat-epochs-negative", ["cat", TOY, "train.epochs=-1"], ["train.epochs"]),
    ("cat-probability", ["cat", TOY, "optim.momentum=2"], ["optim.momentum", "<= 1"]),
    ("cat-wrong-type", ["cat", TOY, "train.batch_size=abc"], ["train.batch_size"]),
    ("cat-empty-key", ["cat", TOY, "=3"], ["=3"]),
    ("cat-no-equals", ["cat", TOY, "nokeyvalue"], ["nokeyvalue"]),
    ("cat-unknown-key", ["cat", TOY, "train.epohcs=1"], ["train.epohcs"]),
    ("cat-tag-traversal", ["cat", TOY, "weights.tag=../../x.y"], ["weights.tag"]),
    ("cat-hub-repo-traversal", ["cat", TOY, "weights.hub_repo=../x"], ["weights.hub_repo"]),
    ("cp-missing", ["cp", "no/such", W_], ["no/such"]),
    ("cp-dest-missing-dir", ["cp", TOY, f"{W_}/nodir/x.yaml"], ["nodir"]),
    ("train-batch-0", ["train", TOY, "train.batch_size=0", "--runs", f"{W_}/runs"], ["train.batch_size"]),
    ("train-batch-negative", ["train", TOY, "train.batch_size=-5", "--runs", f"{W_}/runs"], ["train.batch_size"]),
    ("train-epochs-negative", ["train", TOY, "train.epochs=-1", "--runs", f"{W_}/runs"], ["train.epochs"]),
    ("train-duplicate-key", ["train", f"{W_}/dup.yaml", "--runs", f"{W_}/runs"], ["duplicate key"]),
    ("train-no-recipe", ["train", "--runs", f"{W_}/runs"], ["RECIPE"]),
    ("train-resume-missing", ["train", "--resume", f"{W_}/nope"], ["nope"]),
    ("train-resume-not-a-run", ["train", "--resume", f"{W_}/emptydir"], ["emptydir"]),
    ("train-unknown-option", ["train", TOY, "--no-such-option"], ["--no-such-option"]),
    ("eval-missing-run-relative", ["eval", "runs/missing"], ["runs/missing"]),
    ("eval-missing-run-absolute", ["eval", f"{W_}/run/../nope"], ["nope"]),
    ("eval-config-is-a-list", ["eval", f"{W_}/listcfg"], ["listcfg/config.json", "list"]),
    ("eval-card-without-hash", ["eval", f"{W_}/nohash"], ["nohash", "--trust-unverified"]),
    ("eval-corrupt-weights", ["eval", f"{W_}/flipped"], ["flipped", "sha256 mismatch"]),
    ("eval-pickle", ["eval", f"{W_}/pickled"], ["pickled", "pickle"]),
    ("eval-unknown-tag", ["eval", "cnn.nope"], ["cnn.nope"]),
    ("finetune-missing-data", ["finetune", "cnn", "--data", f"{W_}/missing", "--runs", f"{W_}/runs"], ["missing"]),
    ("finetune-unknown-family", ["finetune", "nope", "--data", W_, "--runs", f"{W_}/runs"], ["nope"]),
    ("finetune-empty-folder", ["finetune", "cnn", "--data", f"{W_}/emptydir", "--runs", f"{W_}/runs"], ["emptydir"]),
    ("reproduce-unknown", ["reproduce", "cnn.nope", "--runs", f"{W_}/runs"], ["cnn.nope"]),
    ("reproduce-traversal", ["reproduce", "../../x.y", "--runs", f"{W_}/runs"], ["../../x.y"]),
    ("predict-unknown", ["predict", "cnn.nope", "--out", f"{W_}/out"], ["cnn.nope"]),
    ("predict-missing-input", ["predict", "cnn", f"{W_}/missing.png", "--out", f"{W_}/out"], ["missing.png"]),
    ("predict-not-an-image", ["predict", "cnn", f"{W_}/afile", "--out", f"{W_}/out"], ["afile"]),
    ("publish-tag-traversal", ["publish", f"{W_}/run", "--tag", "../../victim/.", "--to", f"{W_}/pub"],
     ["../../victim/."]),
    ("publish-absolute-tag", ["publish", f"{W_}/run", "--tag", "/some/where.x", "--to", f"{W_}/pub"],
     ["/some/where.x"]),
    ("publish-card-tag-traversal", ["publish", f"{W_}/evilrun", "--to", f"{W_}/pub"], ["../../victim/."]),
    ("publish-known-tag", ["publish", f"{W_}/run", "--tag", "cnn.fashion_mnist", "--to", f"{W_}/pub"],
     ["cnn.fashion_mnist"]),
    ("publish-no-destination", ["publish", f"{W_}/run"], ["--to"]),
    ("publish-missing-run", ["publish", f"{W_}/nope", "--to", f"{W_}/pub"], ["nope"]),
    ("publish-result-is-a-list", ["publish", f"{W_}/listrun", "--tag", "toy_mlp.x", "--to", f"{W_}/pub"],
     ["result.json"]),
    ("push-missing-folder", ["push", f"{W_}/missing", "org/x"], ["missing"]),
    ("push-card-without-hash", ["push", f"{W_}/nohash", "org/x"], ["nohash"]),
    ("push-bad-repo", ["push", f"{W_}/run/model", "../x"], ["../x"]),
    ("tour-out-under-a-file", ["tour", "--out", f"{W_}/afile/gallery"], ["afile"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(case, ws, cli, monkeypatch):
    _, args, needles = case
    monkeypatch.chdir(ws)
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    args = [a.replace(W_, str(ws)) for a in args]
    before = snapshot(ws, *package_files())
    assert_user_error(cli(*args), *[n.replace(W_, str(ws)) for n in needles])
    assert snapshot(ws, *package_files()) == before, "the failed command wrote something"


def test_a_corrupt_weights_dir_names_its_file(ws, cli, monkeypatch, tmp_path):
    (tmp_path / "x.y").mkdir()
    (tmp_path / "x.y" / "config.json").write_text('["a", "list"]')
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    assert_user_error(cli("list", "--pretrained"), "x.y/config.json")


def test_verify_fails_on_anything_it_cannot_verify(ws, cli, monkeypatch, tmp_path):
    for name, tag in (("nohash", "toy_mlp.nohash"), ("flipped", "toy_mlp.flipped")):
        shutil.copytree(ws / name, tmp_path / tag)
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path))
    code, out, err = cli("verify")
    assert code == 1 and "Traceback" not in err
    assert "UNVERIFIED" in out and "MISMATCH" in out
    code, out, _ = cli("verify", str(ws / "run"))  # a run dir: checked against its own card
    assert code == 0 and " ok " in out
    code, out, _ = cli("verify", str(ws / "nohash"))
    assert code == 1 and "UNVERIFIED" in out


def test_trust_unverified_loads_with_a_warning(ws, cli, caplog):
    with caplog.at_level("WARNING", logger="zoo"):
        model = zoo.create(str(ws / "nohash"), pretrained=True, trust_unverified=True)
    assert "without verification" in caplog.text
    assert model(torch.randn(2, 2)).shape == (2, 3)
    with pytest.raises(W.WeightsError, match="cannot verify"):
        zoo.create(str(ws / "nohash"), pretrained=True)


def test_trust_unverified_on_the_cli_passes_the_hash_gate_but_verify_still_fails(ws, cli):
    assert_user_error(cli("--trust-unverified", "eval", str(ws / "nohash")), "no recipe.yaml")
    code, out, _ = cli("--trust-unverified", "verify", str(ws / "nohash"))
    assert code == 1 and "UNVERIFIED" in out


def test_verbose_shows_the_traceback(ws, cli):
    with pytest.raises(KeyError):
        cli("-v", "info", "no_such_model")


def test_an_internal_bug_is_a_traceback_with_exit_1(monkeypatch, tmp_path):
    """Not a user error: the CLI does not hide it (python -m zoo exits 1 with the traceback)."""
    import subprocess
    import sys

    code = ("import zoo.cli as c\n"
            "def boom(a): raise RuntimeError('an internal bug')\n"
            "c.cmd_recipes = boom\n"
            "raise SystemExit(c.main(['recipes']))\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1 and "Traceback" in out.stderr and "an internal bug" in out.stderr


def test_broken_pipe_exits_quietly(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = f"{sys.executable} -m zoo info cnn.fashion_mnist | head -n 1"
    out = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in out.stderr and "BrokenPipeError" not in out.stderr, out.stderr
    assert out.stdout.strip()
