"""The dqn family: environments, Q-networks, replay buffer, the DQN loop, resume, eval/predict, cards."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo.cli import main as zoo_main
from zoo.engine import train
from zoo.engine.state import load_checkpoint
from zoo.families.dqn.data import env_source
from zoo.families.dqn.model import QNetwork
from zoo.families.dqn.task import TASK, ReplayBuffer, _env_snapshot_works, run_episodes
from zoo.specs import ReturnCurves

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes" / "dqn"
CARTPOLE = RECIPES / "cartpole.yaml"
# a few hundred steps of CartPole with updates, evaluations and checkpoints: seconds on one core.
# "~weights" drops the published tag: zoo.create checks a run folder tagged dqn.cartpole against the
# published card's sha256 (a core quirk, reported) and refuses it.
TINY = ["~weights", "algo.total_steps=1200", "algo.learning_starts=200", "algo.train_every=64",
        "algo.gradient_steps=8", "algo.eval_every=400", "algo.eval_episodes=2",
        "algo.stop_return=null", "data.eval_episodes=3", "train.log_every=200", "train.ckpt_every=400"]

ENVS_MODULE = '''
import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right to the end of a corridor: obs (4,), actions 0 (left) / 1 (right)."""

    def __init__(self, length=2):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        return np.array([self.pos / self.length, 0.5, 0.0, 1.0], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if action == 1 else -1))
        done = self.pos >= self.length
        return self._obs(), 1.0 if done else -0.1, done, False, {}


class Steering(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)


class NotAnEnv:
    pass
'''


@pytest.fixture
def envs_module(tmp_path, monkeypatch):
    """A module of custom environments, importable as `dqn_test_envs`."""
    (tmp_path / "dqn_test_envs.py").write_text(ENVS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "dqn_test_envs"
    sys.modules.pop("dqn_test_envs", None)


def _weights(run_dir: Path) -> dict:
    return load_file(str(run_dir / "model" / "model.safetensors"))


# --------------------------------------------------------------------------- environments


def test_env_sources_describe_spaces(envs_module):
    cart = env_source("CartPole-v1")
    assert cart.obs_shape == (4,) and cart.n_actions == 2
    breakout = env_source("MinAtar/Breakout-v1")
    assert breakout.obs_shape == (4, 10, 10) and breakout.obs_dtype == "uint8"
    custom = env_source(f"{envs_module}:Corridor", {"length": 3}, max_episode_steps=7)
    assert custom.obs_shape == (4,) and custom.n_actions == 2
    assert custom.describe()["env_kwargs"] == {"length": 3}


@pytest.mark.parametrize("env_id, message", [
    ("CartPol-v1", "unknown environment 'CartPol-v1'.*did you mean"),
    ("Pendulum-v1", "continuous action space"),
    ("FrozenLake-v1", "Discrete observation space"),
    ("no_such_module_xyz:Env", "cannot import module"),
])
def test_env_errors_are_clear(env_id, message):
    with pytest.raises(ValueError, match=message):
        env_source(env_id)


def test_custom_env_errors(envs_module):
    with pytest.raises(ValueError, match="continuous action space"):
        env_source(f"{envs_module}:Steering")
    with pytest.raises(ValueError, match="not a gymnasium.Env subclass"):
        env_source(f"{envs_module}:NotAnEnv")


def test_env_snapshots_only_where_they_round_trip():
    assert _env_snapshot_works(env_source("CartPole-v1"))
    assert not _env_snapshot_works(env_source("LunarLander-v3"))  # Box2D bodies do not survive a pickle


# --------------------------------------------------------------------------- Q-networks


@pytest.mark.parametrize("shape, encoder", [([4], "mlp"), ([4, 10, 10], "minatar"), ([4, 84, 84], "nature")])
@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_shapes(shape, encoder, dueling):
    model = zoo.create("dqn", obs_shape=shape, n_actions=5, dueling=dueling)
    assert model.encoder == encoder
    q = model(*model.example_inputs(3))
    assert q.shape == (3, 5)
    actions = model.act(np.zeros((3, *shape), np.uint8))
    assert actions.shape == (3,) and actions.dtype == torch.long


def test_dueling_head_centres_advantages():
    model = QNetwork([4], 3, dueling=True)
    x = torch.randn(6, 4)
    feats = model.body(x)
    adv = model.head(feats)
    assert torch.allclose(model(x) - model.value(feats), adv - adv.mean(1, keepdim=True), atol=1e-6)


def test_act_epsilon_and_errors():
    model = QNetwork([4], 4)
    g = torch.Generator().manual_seed(0)
    random = model.act(torch.zeros(2000, 4), epsilon=1.0, generator=g)
    assert set(random.tolist()) == {0, 1, 2, 3}
    greedy = model.act(torch.zeros(5, 4))
    assert (greedy == greedy[0]).all()
    with pytest.raises(ValueError, match=r"dqn expects obs of shape \(B, 4\)"):
        model(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="nature.*needs \\(C, H, W\\)"):
        QNetwork([8], 2, encoder="nature")
    with pytest.raises(ValueError, match="encoder must be one of"):
        QNetwork([8], 2, encoder="resnet")


# --------------------------------------------------------------------------- replay buffer


def _filled_buffer():
    """One env, 8 steps: episode A = steps 0-2 (terminated at 2), B = 3-5 (truncated at 5), C = 6-7."""
    buf = ReplayBuffer(8, 1, (1,), torch.float32)
    term = [0, 0, 1, 0, 0, 0, 0, 0]
    done = [0, 0, 1, 0, 0, 1, 0, 0]
    for t in range(8):
        buf.add(np.array([[t]], np.float32), np.array([t % 2]), np.array([t + 1.0], np.float32),
                np.array([[t + 100]], np.float32), np.array([bool(term[t])]), np.array([bool(done[t])]))
    return buf


def test_replay_n_step_returns_stop_at_episode_ends():
    buf, gamma = _filled_buffer(), 0.5
    obs, act, ret, nxt, disc = buf.sample(512, 3, gamma, torch.Generator().manual_seed(0))
    starts = obs[:, 0].long()
    assert set(starts.tolist()) == set(range(6))  # windows past the newest step (6, 7) are never drawn
    expected = {  # start: (n-step return, bootstrap obs, discount)
        0: (1 + 0.5 * 2 + 0.25 * 3, None, 0.0),  # ends in a termination: no bootstrap
        1: (2 + 0.5 * 3, None, 0.0),
        2: (3, None, 0.0),
        3: (4 + 0.5 * 5 + 0.25 * 6, 105, 0.125),  # ends in a truncation: bootstraps from the final obs
        4: (5 + 0.5 * 6, 105, 0.25),
        5: (6, 105, 0.5),
    }
    for s, r, n, d, a in zip(starts.tolist(), ret.tolist(), nxt[:, 0].tolist(), disc.tolist(), act.tolist()):
        er, en, ed = expected[s]
        assert r == pytest.approx(er) and d == pytest.approx(ed) and a == s % 2
        if en is not None:
            assert n == en


def test_replay_wraps_and_round_trips():
    buf = _filled_buffer()
    buf.add(np.array([[8.0]], np.float32), np.array([0]), np.array([9.0], np.float32),
            np.array([[108.0]], np.float32), np.array([False]), np.array([False]))
    assert buf.full and buf.pos == 1 and len(buf) == 8
    obs = buf.sample(256, 1, 0.9, torch.Generator().manual_seed(1))[0][:, 0]
    assert set(obs.long().tolist()) == set(range(1, 9))  # slot 0 now holds step 8
    again = ReplayBuffer(8, 1, (1,), torch.float32)
    again.load_state_dict(buf.state_dict())
    assert torch.equal(again.obs, buf.obs) and again.pos == buf.pos and again.full


# --------------------------------------------------------------------------- the DQN loop


def test_terminated_vs_truncated_in_the_buffer(tmp_path, envs_module):
    """Truncation (time limit) stores the real final observation and terminated=False."""
    overrides = [f"data.env={envs_module}:Corridor", "data.env_kwargs={length: 2}", "data.max_episode_steps=3",
                 "data.num_envs=1", "algo.total_steps=60", "algo.eps_end=1.0",  # random walk
                 "algo.learning_starts=100", "algo.eval_every=0", "data.eval_episodes=1",
                 "train.ckpt_every=60"]
    run_dir, _ = train(CARTPOLE, overrides, runs_root=tmp_path)
    buf = load_checkpoint(run_dir / "checkpoints" / "last.pt")["buffer"]
    pos = buf["obs"][:, 0, 0] * 2
    nxt = buf["next_obs"][:, 0, 0] * 2
    move = buf["actions"][:, 0] * 2 - 1
    assert torch.equal(nxt, (pos + move).clamp(min=0)), "next_obs must be the step's own outcome, not a reset"
    assert torch.equal(buf["terminated"][:, 0], nxt == 2)
    truncated = buf["done"][:, 0] & ~buf["terminated"][:, 0]
    assert truncated.any() and (nxt[truncated] < 2).all()


def test_train_writes_run_and_card_extras(tmp_path):
    run_dir, result = train(CARTPOLE, TINY, runs_root=tmp_path)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("split") == "val" for r in records)
    train_recs = [r for r in records if "loss" in r]
    assert train_recs and all(np.isfinite(r["loss"]) for r in train_recs)
    assert {"steps_per_s", "updates_per_s", "epsilon"} <= set(train_recs[-1])
    assert result["fit"]["env_steps"] == 1200 and result["fit"]["updates"] > 0
    assert set(result["metrics"]) >= {"return_mean", "return_std", "episodes"}
    card = json.loads((run_dir / "model" / "config.json").read_text())
    assert card["input_spec"]["env"] == "CartPole-v1" and card["model_args"]["obs_shape"] == [4]
    assert card["return_curve"]
    curves = ReturnCurves.from_card(card)  # the typed card extra reads back what the fit wrote
    assert curves.train == card["return_curve"] and [p[0] for p in curves.val] == [400, 800, 1200]


def test_resume_is_exact(tmp_path):
    """Stop a run early (time limit), resume it, and get the weights of an uninterrupted run."""
    ref, _ = train(CARTPOLE, TINY, runs_root=tmp_path / "ref")
    cut, _ = train(CARTPOLE, [*TINY, "train.max_minutes=0.0001"], runs_root=tmp_path / "cut")
    ckpt = load_checkpoint(cut / "checkpoints" / "last.pt")
    assert ckpt["position"]["step"] < 1200 and ckpt["envs"] is not None
    train(None, ["train.max_minutes=null"], resume=cut)
    w_ref, w_cut = _weights(ref), _weights(cut)
    assert all(torch.equal(w_ref[k], w_cut[k]) for k in w_ref), "resumed weights differ from the unbroken run"


def test_config_errors_before_training(tmp_path):
    with pytest.raises(ValueError, match="algo.tau"):
        train(CARTPOLE, ["algo.tau=0"], runs_root=tmp_path)
    with pytest.raises(ValueError, match="unknown key 'algo.epsilon'"):
        train(CARTPOLE, ["algo.epsilon=0.1"], runs_root=tmp_path)
    with pytest.raises(ValueError, match="continuous action space"):
        train(CARTPOLE, ["data.env=Pendulum-v1"], runs_root=tmp_path)


@pytest.mark.parametrize("override, says", [
    ("train.epochs=3", r"train\.epochs: not used by task rl"),        # the loop counts env steps (algo.total_steps)
    ("train.ema=0.99", r"train\.ema: not used by task rl"),
    ("train.accumulate=2", r"train\.accumulate: not used by task rl"),
    ("data.algo.gamma=0.9", r"data\.algo: task rl reads this from algo now"),
])
def test_keys_the_dqn_loop_does_not_read_are_refused(override, says):
    from zoo import recipes as R
    from zoo.engine.run import resolve_recipe

    with pytest.raises(R.RecipeError, match=says):
        resolve_recipe(R.load(CARTPOLE, [override])[0])
    resolved = resolve_recipe(R.load(CARTPOLE)[0])[0]  # `zoo cat` shows only what the loop reads
    assert "epochs" not in resolved["train"] and "eval_every" not in resolved["train"]
    assert resolved["algo"]["total_steps"] == 50_000 and "algo" not in resolved["data"]


@pytest.mark.parametrize("recipe", sorted(p.stem for p in RECIPES.glob("*.yaml") if p.stem != "finetune"))
def test_recipe_smoke(recipe, tmp_path):
    run_dir, result = train(RECIPES / f"{recipe}.yaml", list(TASK.smoke_overrides), runs_root=tmp_path)
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    assert np.isfinite(result["metrics"]["return_mean"])


# --------------------------------------------------------------------------- evaluate / predict / finetune


def test_run_episodes_counts_exactly():
    model = QNetwork([4], 2)
    m = run_episodes(model, env_source("CartPole-v1"), episodes=7, seed=3, num_envs=3)
    assert m["episodes"] == 7 and m["return_min"] <= m["return_mean"] <= m["return_max"]
    again = run_episodes(model, env_source("CartPole-v1"), episodes=7, seed=3, num_envs=3)
    assert again == m  # fixed seeds: the same episodes


def test_predict_gif_and_curve(tmp_path):
    run_dir, _ = train(CARTPOLE, TINY, runs_root=tmp_path / "runs")
    assert zoo_main(["predict", str(run_dir), "--out", str(tmp_path / "out")]) == 0
    gif = next((tmp_path / "out").glob("CartPole-v1_episode_*.gif"))
    curve = tmp_path / "out" / "CartPole-v1_return_curve.png"
    assert gif.stat().st_size > 1000 and curve.stat().st_size > 1000
    import imageio.v2 as imageio

    assert len(imageio.mimread(gif)) >= 2
    model = zoo.create(f"local-dir:{run_dir / 'model'}", pretrained=True)
    assert TASK.draw_sample(model, tmp_path / "tour.png").is_file()
    with pytest.raises(ValueError, match="the model takes \\[4\\] and 2"):
        TASK.predict(model, "Acrobot-v1", tmp_path / "out")


def _published(tag):
    if tag not in zoo.list_pretrained():
        pytest.skip(f"{tag} is not published in this checkout")


def test_finetune_on_custom_env(tmp_path, envs_module, monkeypatch, capsys):
    _published("dqn.cartpole")
    monkeypatch.chdir(tmp_path)
    # overrides go before the options: argparse stops reading positionals after them
    rc = zoo_main(["finetune", "dqn", "algo.total_steps=400", "algo.learning_starts=100",
                   "algo.eval_every=0", "data.eval_episodes=2", "data.max_episode_steps=50",
                   "--data", f"{envs_module}:Corridor", "--runs", str(tmp_path / "runs")])
    assert rc == 0
    card = json.loads(next((tmp_path / "runs").glob("*/model/config.json")).read_text())
    assert card["input_spec"]["env"] == f"{envs_module}:Corridor"
    rc = zoo_main(["finetune", "dqn", "--data", "Acrobot-v1", "--runs", str(tmp_path / "runs")])
    assert rc == 2 and "same spaces" in capsys.readouterr().err


def _recheck(tag, capsys):
    """`zoo eval TAG` replays the card's 100 evaluation episodes (fixed seeds) and gets its figure."""
    _published(tag)
    card = zoo.model_info(tag)
    assert zoo_main(["eval", tag, "data.eval_episodes=100", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["episodes"] == 100
    assert metrics["return_mean"] == pytest.approx(card["metrics"]["return_mean"], abs=1.0)
    exp = card["expect"]
    assert metrics[exp["metric"]] >= exp["value"] - exp["tolerance"]


@pytest.mark.parametrize("tag", ["dqn.cartpole", "dqn.acrobot"])
def test_card_is_rechecked(tag, capsys):
    _recheck(tag, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("tag", ["dqn.lunarlander", "dqn.minatar_breakout"])
def test_slow_card_is_rechecked(tag, capsys):
    _recheck(tag, capsys)
