"""`zoo reproduce`: tolerances from seed studies, precision-aware references, the cards' reproducibility
blocks, recipes defined in steps, the ISA cap (`--isa avx2`), README's table generated from the cards, and
`zoo reproduce --all --fast` in CI (FAST_TAGS: every tag whose card measured <= 2 min a run; the slow ones
are SLOW_TAGS, run by hand as README.md's "Reproduce" section says)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo import weights as W
from zoo.cli import main
from zoo.engine import evaluate, publish, reproduce, train
from zoo.engine import reproducing as RP

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "tests" / "example_family" / "recipes" / "toy.yaml"
# `zoo reproduce --all --fast` in CI, exactly: the tags whose card measured <= 2 min a run (gcn.cora,
# gcn.citeseer, dqn.cartpole, patchcore.brick/grass/gravel: 5.1 min by the cards, 8.5 min measured one after
# another on a loaded 2-core machine; docs/training.md). The rest
# (SLOW_TAGS, 3.5-26 min a run) are run by hand: README.md's "Reproduce" section says how.
FAST_TAGS = RP.fast_tags()
SLOW_TAGS = sorted(set(RP.all_tags()) - set(FAST_TAGS))


@pytest.fixture
def toy_card(tmp_path, monkeypatch):
    """A published toy tag in a weights folder of its own (ZOO_WEIGHTS_DIR): nothing bundled is written."""
    run_dir, _ = train(TOY, [], runs_root=tmp_path / "runs")
    folder = publish(run_dir, to=tmp_path / "weights")
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path / "weights"))
    return folder


def _ref(mean=0.8, std=0.01, n=5, mode="two-sided", floor=None):
    return {"metric": "accuracy", "mean": mean, "std": std, "n": n, "k": RP.K_STD, "mode": mode,
            "floor": RP.floor_for(mean) if floor is None else floor, "source": "test"}


def test_judge_k_std_with_a_floor():
    ref = _ref()
    assert RP.judge(ref, [0.8 + 3 * 0.01])["passed"]                   # at k std (+ floor): inside
    assert not RP.judge(ref, [0.8 - 3 * 0.01 - RP.floor_for(0.8) - 1e-6])["passed"]
    det = _ref(mean=500.0, std=0.0)                                      # a deterministic recipe: only the floor
    assert RP.judge(det, [499.5])["passed"] and not RP.judge(det, [490.0])["passed"]
    assert RP.judge(_ref(std=0.0), [0.8 + 0.0005])["passed"]             # numerical noise on another CPU
    assert not RP.judge(ref, [None])["passed"]


def test_judge_several_seeds_compares_means():
    ref = _ref(std=0.01, n=5)
    one = RP.judge(ref, [0.77])
    three = RP.judge(ref, [0.77, 0.771, 0.769])                          # same mean, far tighter
    assert one["bound"] > three["bound"] and not three["passed"]
    assert RP.judge(ref, [0.79, 0.80, 0.81])["passed"]


def test_reference_follows_precision_and_says_when_there_is_none():
    study = {"mean": 0.93, "std": 0.002, "n": 3}
    card = {"tag": "x.y", "metrics": {"accuracy": 0.9446}, "training": {"precision": "bf16 autocast"},
            "expect": {"metric": "accuracy", "value": 0.94, "tolerance": 0.003},
            "reproducibility": {"seed_study": {"fp32": study}}}
    assert RP.reference(card, "fp32")["mean"] == 0.93                    # the fp32 study, not the bf16 card
    with pytest.raises(ValueError, match="measured in bf16 autocast; this run is fp32"):
        RP.reference({**card, "reproducibility": {}}, "fp32")
    with pytest.raises(ValueError, match=r"--record-study` here makes one; one run took 11 min"):
        RP.reference({**card, "reproducibility": {"minutes": 10.8}}, "fp32")  # and says how to make a reference
    fallback = RP.reference({**card, "reproducibility": {}}, "bf16 autocast")
    assert fallback["mean"] == 0.9446 and fallback["floor"] == 0.003 and "no seed study" in fallback["source"]
    older = {**card, "training": {}, "reproducibility": {"card_precision": "bf16 autocast"}}  # predates the field
    assert RP.card_precision(older) == "bf16 autocast" and RP.card_precision({"tag": "x.y"}) == "fp32"


def test_replace_section():
    text = "# t\n\n## Results\n\nr\n\n## Training\n\nt\n"
    once = RP.replace_section(text, "## Reproducibility\n\nA\n")
    assert once.endswith("## Reproducibility\n\nA\n") and "## Training" in once
    middle = once.replace("## Reproducibility\n\nA\n", "## Reproducibility\n\nA\n\n## Intended use\n\nu\n")
    again = RP.replace_section(middle, "## Reproducibility\n\nB\n")
    assert "A\n" not in again and "B\n" in again and again.endswith("## Intended use\n\nu\n")


def test_seed_study_record_and_reproduce_on_the_card(toy_card, tmp_path):
    card = W.get_card("toy_mlp.blobs")
    runs = RP.run_seeds("toy_mlp.blobs", RP.study_seeds(RP.published_seed(card), 3), runs_root=tmp_path / "s")
    assert [r["seed"] for r in runs] == [0, 1000, 2000]
    assert runs[0]["value"] == pytest.approx(card["metrics"]["accuracy"])  # the published seed, the same number
    block = RP.record_study("toy_mlp.blobs", runs, note="test")
    study = block["seed_study"]["fp32"]
    assert study["n"] == 3 and study["published_seed"] == 0 and study["machine"]["isa"]
    assert json.loads((toy_card / "config.json").read_text())["reproducibility"] == block
    ok, verdict = reproduce("toy_mlp.blobs", runs_root=tmp_path / "again")
    assert ok, verdict
    assert verdict["source"].startswith("seed study (3 seeds, fp32)")
    RP.record_result(verdict, note="test")
    readme = (toy_card / "README.md").read_text()
    assert readme.count("## Reproducibility") == 1 and "Reproduced on:" in readme and "| fp32 |" in readme
    assert W.get_card("toy_mlp.blobs")["reproducibility"]["reproduced_on"][0]["value"] == verdict["measured"]
    assert "Not reproduced on" not in readme
    # a run outside the tolerance goes on the card too, with the reference it missed; on the same machine and
    # precision it replaces the pass (the latest result there stands), and a later pass replaces it again
    missed = {**verdict, "measured": verdict["mean"] - 1.0, "values": [verdict["mean"] - 1.0], "passed": False}
    RP.record_result(missed, note="test")
    block = W.get_card("toy_mlp.blobs")["reproducibility"]
    assert "reproduced_on" not in block and block["not_reproduced_on"][0]["reference"] == verdict["mean"]
    readme = (toy_card / "README.md").read_text()
    assert "Not reproduced on" in readme and f"{verdict['mean'] - 1.0:.4f} | {verdict['mean']:.4f} ± " in readme
    RP.record_result(verdict, note="test")
    block = W.get_card("toy_mlp.blobs")["reproducibility"]
    assert "not_reproduced_on" not in block and len(block["reproduced_on"]) == 1
    model = zoo.create("toy_mlp", pretrained=True)                        # the folder still verifies and loads
    assert model.pretrained_cfg["tag"] == "toy_mlp.blobs"


def test_a_study_in_another_precision_keeps_the_cards_minutes(toy_card):
    """A bf16 card's fp32 study (run on an AVX2-only CPU) is the reference for fp32 runs; the card's one-run
    minutes (fast or slow, README's column) stay those of the card's own precision."""
    card = W.get_card("toy_mlp.blobs")
    RP.record_study("toy_mlp.blobs", [{"seed": 0, "value": 0.9, "seconds": 60.0, "precision": "fp32",
                                       "hardware": "h", "threads": 1}] * 3)
    runs = [{"seed": s, "value": 0.8 + s / 1e5, "seconds": 600.0, "precision": "bf16 autocast", "hardware": "g",
             "threads": 2} for s in (0, 1000, 2000)]
    block = RP.record_study("toy_mlp.blobs", runs, note="other")
    assert RP.card_precision(card) == "fp32" and block["minutes"] == 1.0
    assert set(block["seed_study"]) == {"fp32", "bf16 autocast"}
    assert block["seed_study"]["bf16 autocast"]["seconds"] == [600.0] * 3
    assert RP.reference(W.get_card("toy_mlp.blobs"), "bf16 autocast")["mean"] == pytest.approx(0.81)


def test_a_recipes_threads_last_for_its_run_only(toy_card, tmp_path):
    """`zoo reproduce --all` trains tag after tag in one process: a recipe with threads: null must get the
    process's threads, not the previous tag's, and each record names the threads its run trained on."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runs = RP.run_seeds("toy_mlp.blobs", [0], ["train.threads=1"], runs_root=tmp_path / "one")
        assert torch.get_num_threads() == 2                                   # restored after the run
        assert runs[0]["threads"] == 1 and runs[0]["hardware"].startswith("1 CPU thread ")
        assert RP.verdict_of(W.get_card("toy_mlp.blobs"), runs)["machine"]["threads"] == 1
        runs = RP.run_seeds("toy_mlp.blobs", [0], ["train.threads=null"], runs_root=tmp_path / "null")
        assert runs[0]["threads"] == 2
        evaluate("toy_mlp.blobs", overrides=["train.threads=1"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_republishing_a_tag_keeps_what_still_holds_of_its_reproducibility_block(toy_card, tmp_path, capsys):
    """A seed study describes the recipe: republishing the same recipe keeps it (and, same seed, the passes)."""
    row = {"machine": "m", "isa": "AVX2", "threads": 1, "precision": "fp32", "value": 0.9, "seconds": 1.0,
           "date": "2026-12-07", "n": 1, "torch": torch.__version__}
    block = {"seed_study": {"fp32": {"status": "not run", "reason": "test"}}, "k": 3.0, "minutes": 0.1,
             "reproduced_on": [row]}
    RP.write_block("toy_mlp.blobs", block)
    weights = toy_card.parent

    def republish(overrides):
        run_dir, _ = train(toy_card / "recipe.yaml", overrides, runs_root=tmp_path / "r")
        publish(run_dir, "toy_mlp.blobs", to=weights)
        return W.get_card("toy_mlp.blobs").get("reproducibility"), capsys.readouterr().err

    kept, said = republish([])                                            # the same recipe, the same seed
    assert kept == block and "kept" in said
    kept, said = republish(["train.seed=1000"])                            # another seed: the passes go
    assert kept == {k: v for k, v in block.items() if k != "reproduced_on"} and "seed 0" in said
    miss = {**row, "reference": 0.95, "bound": 0.01, "reference_source": "test"}
    RP.write_block("toy_mlp.blobs", {**block, "reproduced_on": [], "not_reproduced_on": [miss]})
    kept, said = republish(["train.seed=2000"])                            # and so do the misses
    assert "not_reproduced_on" not in kept and "reproductions were dropped" in said
    assert "## Reproducibility" in (toy_card / "README.md").read_text()
    kept, said = republish(["train.seed=1000", "train.epochs=1"])          # another recipe: nothing holds
    assert kept is None and "dropped" in said and "train" in said


def test_cli_reproduce_flags(toy_card, tmp_path, capsys):
    assert main(["reproduce", "--fast", "toy_mlp.blobs"]) == 2
    assert "--all --fast" in capsys.readouterr().err
    assert main(["reproduce"]) == 2
    assert main(["reproduce", "toy_mlp.blobs", "--seeds", "2", "--runs", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "toy_mlp.blobs" in out and "OK" in out and "recipe tolerance" in out
    # --record-study --record: the study goes on the card, and the published seed's run is a pass judged by the
    # card as it was (its recipe tolerance), not by the study it is part of
    assert main(["reproduce", "toy_mlp.blobs", "--seeds", "2", "--record-study", "--record",
                 "--runs", str(tmp_path / "s")]) == 0
    assert "recipe tolerance" in capsys.readouterr().out
    block = W.get_card("toy_mlp.blobs")["reproducibility"]
    assert block["seed_study"]["fp32"]["n"] == 2
    assert block["reproduced_on"][0]["value"] == block["seed_study"]["fp32"]["values"][0]


def test_max_minutes_fired_is_recorded(tmp_path):
    _, result = train(TOY, ["train.epochs=50", "train.max_minutes=0.0001"], runs_root=tmp_path)
    assert result["fit"]["stopped_by"] == "max_minutes" and result["fit"]["steps"] < result["fit"]["planned_steps"]
    _, result = train(TOY, ["train.epochs=1"], runs_root=tmp_path)
    assert "stopped_by" not in result["fit"]


def test_published_recipes_define_work_in_steps():
    for path in sorted((ROOT / "recipes").rglob("*.yaml")):
        recipe = yaml.safe_load(path.read_text())
        assert (recipe.get("schedule") or {}).get("progress", "steps") == "steps", f"{path}: clock-driven"


def test_every_card_has_a_reproducibility_block():
    cards = W.load_index()
    for tag, card in cards.items():
        block = card.get("reproducibility")
        assert block, f"{tag}: no reproducibility block"
        studies = block.get("seed_study") or {}
        assert studies, f"{tag}: no seed study, and no 'not run' entry"
        for prec, study in studies.items():
            if study.get("n"):
                assert study["n"] >= 3 and study["std"] >= 0 and study["machine"]["isa"] and study["date"], tag
                assert len(study["values"]) == study["n"] == len(study["seeds"]), tag
            else:
                assert study.get("status") == "not run" and study.get("reason"), f"{tag} [{prec}]"
        for row in block.get("reproduced_on", []):
            assert {"machine", "precision", "value", "seconds", "date"} <= set(row), tag
        assert block.get("minutes") is not None, f"{tag}: no measured minutes, so neither fast nor slow"
        # the card's README says what config.json holds (write_block keeps them together)
        readme = (W.bundled_weights_dir() / tag / "README.md").read_text()
        assert RP.reproducibility_markdown(card) in readme, f"{tag}: README's Reproducibility section is stale"


def test_readme_table_is_generated_from_the_cards():
    readme = (ROOT / "README.md").read_text()
    assert RP.readme_with_table(readme) == readme, "README.md's reproduce table is out of date: zoo reproduce --readme"
    table = RP.readme_table()
    rows = {r.split(" | ")[0][2:]: r for r in table.splitlines()[2:]}
    assert sorted(rows) == RP.all_tags()
    assert all(", fast |" in rows[t] for t in FAST_TAGS) and all(", slow |" in rows[t] for t in SLOW_TAGS)
    assert "`zoo reproduce cnn.digits`" in readme  # how to run a slow one


def test_readme_table_rows():
    card = {"tag": "x.y", "metrics": {"accuracy": 0.9}, "expect": {"metric": "accuracy"},
            "reproducibility": {"minutes": 3.0, "seed_study": {"fp32": {"status": "not run", "reason": "r"}}}}
    row = RP.readme_table({"x.y": card}).splitlines()[2]
    assert row == "| x.y | accuracy | 0.9000 | not run | 3.0 min, slow | none yet: `zoo reproduce x.y` |"
    card["reproducibility"].update(minutes=0.5, seed_study={"fp32": {"mean": -82.0, "std": 3.5, "n": 3}},
                                   reproduced_on=[{"machine": "1 CPU thread (C, AVX2 (capped on an AVX-512 BF16 CPU))",
                                                   "value": 0.91, "seconds": 30.2, "date": "2026-12-07"}])
    row = RP.readme_table({"x.y": card}).splitlines()[2]
    assert "| -82.0 ± 3.5, n 3 (fp32) | 0.5 min, fast |" in row and "0.9100 (1 CPU thread (C, AVX2 (capped" in row
    assert row.endswith(", 30 s, 2026-12-07) |")
    miss = {"machine": "1 CPU thread (C, AVX2)", "value": 0.8810, "seconds": 2184.0, "date": "2026-12-08"}
    card["reproducibility"].update(reproduced_on=[], not_reproduced_on=[miss])
    row = RP.readme_table({"x.y": card}).splitlines()[2]
    assert row.endswith("| none yet: `zoo reproduce x.y`; **outside the tolerance**: 0.8810 (1 CPU thread (C, AVX2), "
                        "2184 s, 2026-12-08) |")
    with pytest.raises(ValueError, match="no reproduce table block"):
        RP.readme_with_table("# readme\n")


def test_cpu_isa_reports_a_cap_and_drops_native_bf16(monkeypatch):
    from zoo.engine import trainer

    def fresh(capability):  # cpu_isa and native_bf16 are cached per process: the cap is set before start
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        trainer.cpu_isa.cache_clear(), trainer.native_bf16.cache_clear()
        return trainer.cpu_isa(), trainer.native_bf16(torch.device("cpu"))

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    try:
        assert fresh("AVX512") == ("AVX-512 BF16", True)
        assert fresh("AVX2") == ("AVX2 (capped on an AVX-512 BF16 CPU)", False)  # amp true: fp32 under the cap
    finally:
        monkeypatch.undo()
        trainer.cpu_isa.cache_clear(), trainer.native_bf16.cache_clear()
    with pytest.raises(ValueError, match="--isa avx512: expected one of avx2"):
        RP.isa_env("avx512")


def test_isa_cap_that_did_not_take_is_an_error(monkeypatch, capsys):
    for key, value in RP.isa_env("avx2").items():
        monkeypatch.setenv(key, value)  # as if capped, but torch still dispatches to AVX-512 kernels
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    assert main(["reproduce", "gcn.cora", "--isa", "avx2"]) == 2
    assert "dispatches to AVX512 kernels, not AVX2" in capsys.readouterr().err


def test_cli_reproduce_isa_avx2_reruns_capped(toy_card, tmp_path, capfd):
    """`--isa avx2` re-executes zoo with the kernels capped; the pass on the card says so."""
    assert main(["reproduce", "toy_mlp.blobs", "--isa", "avx2", "--record", "--runs", str(tmp_path / "r")]) == 0
    out = capfd.readouterr().out
    assert "OK" in out and "ISA AVX2" in out
    row = W.get_card("toy_mlp.blobs")["reproducibility"]["reproduced_on"][-1]
    assert row["isa"].startswith("AVX2") and row["precision"] == "fp32" and row["threads"] >= 1
    assert row["isa"] in row["machine"] and row["isa"] in (toy_card / "README.md").read_text()
    if RP.machine()["isa"] not in ("AVX2", "no AVX2"):  # a wider CPU: the card says the ISA was capped
        assert row["isa"].endswith("CPU)") and "capped on an" in row["isa"]


@pytest.mark.parametrize("tag", FAST_TAGS)
def test_reproduce_fast_tags(tag, tmp_path, capsys):
    """`zoo reproduce --all --fast`: each fast tag retrains and lands within its card's tolerance."""
    assert main(["reproduce", tag, "--runs", str(tmp_path)]) == 0, capsys.readouterr().out
