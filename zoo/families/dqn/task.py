"""The "rl" task: DQN (Mnih et al. 2015) with Double DQN, n-step returns and a dueling option.

    zoo train recipes/dqn/cartpole.yaml
    zoo eval dqn.cartpole data.eval_episodes=100          # return_mean, return_std, ...
    zoo predict dqn.cartpole --out out/                    # episode GIF + training return curve

`fit` replaces the engine's batch loop with environment interaction, and still uses the engine's
checkpoints, metrics.jsonl, progress bar and seeding. One iteration: every env of a gymnasium
vector env takes an epsilon-greedy action, the transitions go to a replay buffer preallocated as
tensors, and every `train_every` env steps `gradient_steps` minibatches are drawn for a Huber (or
MSE) TD loss against a target network (hard copies every `target_update` updates, or Polyak
averaging with `tau` < 1).

Terminated vs truncated: an episode that *terminated* (the MDP ended) has no value after its last
step, so its TD target is r alone; one that was *truncated* (a time limit) still bootstraps from
its final observation, which same-step autoreset hands over in info["final_obs"].

Recipe: the engine sections hold what they already mean here (optim, schedule, and of train only
`RLTask.ENGINE_KEYS["train"]`: batch_size, grad_clip, seed, threads, max_minutes, and log_every /
ckpt_every in env steps; any other train key, such as epochs or ema, is refused). The environment and
evaluation protocol are in `data`, the algorithm's hyper-parameters in the task's own `algo` section
(`data.algo` before: refused with a pointer to `algo`).

Resume (`zoo train --resume RUN`): the checkpoint holds the online and target networks, optimiser,
scheduler, counters, the replay buffer (unless `algo.save_buffer: false`), the exploration
generator, the global RNGs, the episode statistics and the current observations. When the vector
env survives a pickle round trip (classic control, MinAtar: checked at start-up), a snapshot of it
(simulator state and env RNGs) is stored too, and a resumed run is bit-identical to an unbroken
one. Otherwise (Box2D, ALE, async envs) the resumed run starts fresh episodes from a seed derived
from the step count: everything else is restored, the interrupted episodes are lost. The snapshot
is a pickle, so only resume run directories you trust (your own).
"""

from __future__ import annotations

import copy
import json
import math
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from zoo.drawing import pyplot, save
from zoo.engine.loop import Loop
from zoo.engine.optim import build_optimizer, build_scheduler
from zoo.families.dqn.data import EnvSource, env_source, is_atari
from zoo.recipes import NUM, PROB
from zoo.recipes import F as Field
from zoo.specs import ReturnCurves
from zoo.tasks.base import Data, Task

LOSSES = ("huber", "mse")


def _one_of(value: str, names: tuple[str, ...]) -> None:
    if value not in names:
        raise ValueError(f"expected one of {', '.join(names)}, got {value!r}")


ALGO_SCHEMA = {
    "total_steps": Field(int, 50_000, "environment steps, summed over the vectorised envs", ge=1),
    "buffer_size": Field(int, 100_000, "replay capacity in transitions", ge=1),
    "learning_starts": Field(int, 1_000, "env steps of exploration before the first update", ge=0),
    "train_every": Field(int, 1, "env steps between rounds of updates", ge=1),
    "gradient_steps": Field(int, 1, "updates per round", ge=1),
    "gamma": Field(NUM, 0.99, **PROB),
    "n_step": Field(int, 1, "n-step returns (1: plain one-step TD)", ge=1),
    "double": Field(bool, True, "Double DQN: the online net picks the next action, the target net values it"),
    "target_update": Field(int, 1_000, "updates between hard target copies (when tau == 1)", ge=1),
    "tau": Field(NUM, 1.0, "Polyak factor applied every update when < 1", gt=0, le=1),
    "loss": Field(str, "huber", "huber | mse", check=lambda v: _one_of(v, LOSSES)),
    "eps_start": Field(NUM, 1.0, **PROB),
    "eps_end": Field(NUM, 0.05, **PROB),
    "eps_fraction": Field(NUM, 0.1, "fraction of total_steps over which epsilon decays linearly", **PROB),
    "reward_clip": Field(bool, False, "learn from sign(reward) (Atari); logged returns stay raw"),
    "eval_every": Field(int, 0, "env steps between evaluations during training (0: none)", ge=0),
    "eval_episodes": Field(int, 10, "episodes of each evaluation during training", ge=1),
    "keep_best": Field(bool, True, "end with the weights of the best evaluation during training"),
    "stop_return": Field((int, float, type(None)), None, "stop once an evaluation during training reaches it"),
    "save_buffer": Field(bool, True, "store the replay buffer in checkpoints (exact resume)"),
}

class ReplayBuffer:
    """Transitions of E parallel envs in a time-major ring of preallocated tensors, slot (t, e).

    Keeping each env's steps in time order lets n-step returns be gathered at sampling time (a
    window t..t+n-1 of one env, cut at the first episode end) instead of being assembled per step
    in Python. Windows that would run past the newest step are never drawn.

    Args:
        capacity: transitions in all (rounded down to a multiple of `num_envs`).
        num_envs: E.
        obs_shape / obs_dtype: one observation (uint8 frames stay uint8: 4x less memory than float).
    """

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: torch.dtype):
        self.slots = max(2, capacity // num_envs)
        shape = (self.slots, num_envs)
        self.obs = torch.zeros(*shape, *obs_shape, dtype=obs_dtype)
        self.next_obs = torch.zeros(*shape, *obs_shape, dtype=obs_dtype)
        self.actions = torch.zeros(shape, dtype=torch.long)
        self.rewards = torch.zeros(shape)
        self.terminated = torch.zeros(shape, dtype=torch.bool)
        self.done = torch.zeros(shape, dtype=torch.bool)  # terminated or truncated: ends an n-step window
        self.pos, self.full = 0, False

    def __len__(self) -> int:
        return (self.slots if self.full else self.pos) * self.obs.shape[1]

    def add(self, obs, actions, rewards, next_obs, terminated, done) -> None:
        t = self.pos
        self.obs[t] = torch.from_numpy(obs)
        self.next_obs[t] = torch.from_numpy(next_obs)
        self.actions[t] = torch.from_numpy(actions)
        self.rewards[t] = torch.from_numpy(rewards)
        self.terminated[t] = torch.from_numpy(terminated)
        self.done[t] = torch.from_numpy(done)
        self.pos = (t + 1) % self.slots
        self.full = self.full or self.pos == 0

    def can_sample(self, n_step: int) -> bool:
        return self.full or self.pos >= n_step

    def sample(self, batch: int, n_step: int, gamma: float, generator: torch.Generator):
        """(obs, actions, n-step returns, bootstrap obs, bootstrap discount) of `batch` transitions.

        The discount is gamma^k for a window of k rewards, and 0 when the window ends in a
        termination (no value after the end of an MDP episode).
        """
        filled = self.slots if self.full else self.pos
        n_start = filled - (n_step - 1)
        if n_start < 1:
            raise RuntimeError(f"replay buffer: {filled} steps stored, {n_step}-step returns need more")
        first = self.pos if self.full else 0  # the oldest slot
        t = (first + torch.randint(n_start, (batch,), generator=generator)) % self.slots
        e = torch.randint(self.obs.shape[1], (batch,), generator=generator)
        returns = torch.zeros(batch)
        alive = torch.ones(batch, dtype=torch.bool)
        last, count = t.clone(), torch.zeros(batch)
        for k in range(n_step):
            tk = (t + k) % self.slots
            returns += alive * (gamma ** k) * self.rewards[tk, e]
            last = torch.where(alive, tk, last)
            count += alive
            alive &= ~self.done[tk, e]
        discount = gamma ** count * (~self.terminated[last, e])
        return self.obs[t, e], self.actions[t, e], returns, self.next_obs[last, e], discount

    def state_dict(self) -> dict:
        filled = self.slots if self.full else self.pos
        fields = ("obs", "next_obs", "actions", "rewards", "terminated", "done")
        return {"pos": self.pos, "full": self.full, **{f: getattr(self, f)[:filled].clone() for f in fields}}

    def load_state_dict(self, state: dict) -> None:
        n = len(state["obs"])
        if n > self.slots or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError(f"replay buffer in the checkpoint {tuple(state['obs'].shape)} does not fit this "
                             f"run's {tuple(self.obs.shape)}: resume with the recipe the run started with")
        for f in ("obs", "next_obs", "actions", "rewards", "terminated", "done"):
            getattr(self, f)[:n] = state[f]
        self.pos, self.full = state["pos"], state["full"]


class EvalEnvs:
    """The evaluation protocol: `episodes` greedy (or `epsilon`-greedy) episodes from fixed seeds."""

    def __init__(self, source: EnvSource, episodes: int, seed: int, epsilon: float, num_envs: int):
        self.source, self.episodes, self.seed, self.epsilon, self.num_envs = source, episodes, seed, epsilon, num_envs

    def __len__(self) -> int:
        return self.episodes


def run_episodes(model, source: EnvSource, episodes: int, seed: int, epsilon: float = 0.0,
                 num_envs: int = 10) -> dict[str, float]:
    """Play exactly `episodes` episodes and summarise their returns.

    Each of the vectorised envs plays a fixed share of the episodes; counting whichever episodes end
    first would favour short ones (the bias SB3's evaluate_policy also avoids).
    """
    if episodes < 1:
        raise ValueError(f"data.eval_episodes must be >= 1, got {episodes}")
    n = min(num_envs, episodes)
    quota = np.array([episodes // n + (i < episodes % n) for i in range(n)])
    envs = source.make_vector(n)
    gen = torch.Generator().manual_seed(seed)
    returns: list[float] = []
    lengths: list[int] = []
    done_count = np.zeros(n, dtype=np.int64)
    ep_ret, ep_len = np.zeros(n), np.zeros(n, dtype=np.int64)
    obs, _ = envs.reset(seed=seed)
    was_training = model.training
    model.eval()
    try:
        while (done_count < quota).any():
            actions = model.act(obs, epsilon, gen).cpu().numpy()
            obs, rewards, term, trunc, _ = envs.step(actions)
            ep_ret += rewards
            ep_len += 1
            for i in np.flatnonzero(term | trunc):
                if done_count[i] < quota[i]:
                    returns.append(float(ep_ret[i]))
                    lengths.append(int(ep_len[i]))
                    done_count[i] += 1
                ep_ret[i], ep_len[i] = 0.0, 0
    finally:
        envs.close()
        model.train(was_training)
    r = np.asarray(returns)
    return {"return_mean": float(r.mean()), "return_std": float(r.std()), "return_min": float(r.min()),
            "return_max": float(r.max()), "length_mean": float(np.mean(lengths)), "episodes": float(len(r))}


def td_targets(model, target, sample, double: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q(s, a), TD target y) in float32 for a replay minibatch (obs, actions, n-step returns, bootstrap obs,
    bootstrap discount): y = returns + discount * V(bootstrap obs), where V is the target network's value of
    the online network's greedy action (Double DQN) or the target network's own maximum."""
    o, a, ret, nxt, disc = sample
    o, nxt = o.float(), nxt.float()
    if double:  # one online pass over both halves; only the first half gets gradients
        q_all = model(torch.cat([o, nxt]))
        q, next_pick = q_all[:len(o)], q_all[len(o):].detach().argmax(1, keepdim=True)
    else:
        q = model(o)
    q = q.gather(1, a.unsqueeze(1)).squeeze(1).float()
    with torch.no_grad():
        next_q = target(nxt).float()
        next_v = next_q.gather(1, next_pick).squeeze(1) if double else next_q.max(1).values
        return q, ret + disc * next_v


def _env_snapshot_works(source: EnvSource) -> bool:
    """True when a pickled copy of the env continues exactly as the original (checked on a few steps)."""
    try:
        env = source.make_vector(1)
        env.reset(seed=123)
        for _ in range(3):
            env.step(np.zeros(1, dtype=np.int64))
        twin = pickle.loads(pickle.dumps(env))
        for k in range(8):
            a = np.full(1, k % source.n_actions, dtype=np.int64)
            out_a, out_b = env.step(a), twin.step(a)
            if not (np.array_equal(out_a[0], out_b[0]) and np.array_equal(out_a[1], out_b[1])):
                return False
        return True
    except Exception:  # unpicklable or broken after unpickling (Box2D bodies, emulators): no snapshot
        return False


def _check_config(cfg: dict, algo: dict) -> None:
    """What the schemas cannot say alone (ranges and names are checked where the keys are declared)."""
    if algo["buffer_size"] < 2 * cfg["num_envs"] * algo["n_step"]:
        raise ValueError(f"algo.buffer_size={algo['buffer_size']} must hold at least 2 * data.num_envs * "
                         f"algo.n_step = {2 * cfg['num_envs'] * algo['n_step']} transitions")


class RLTask(Task):
    name = "rl"
    main_metric = "return_mean"
    mode = "max"
    DATA_SCHEMA = {
        "env": Field(str, "CartPole-v1", "gymnasium id, MinAtar/..., ALE/... or package.module:EnvClass"),
        "env_kwargs": Field(dict, {}, "keyword arguments for gymnasium.make / the env class"),
        "max_episode_steps": Field((int, type(None)), None, "extra time limit (truncation)", ge=1),
        "num_envs": Field(int, 4, "vectorised training envs", ge=1),
        "vector": Field(str, "sync", "sync | async (async: no env snapshot in checkpoints)",
                        check=lambda v: _one_of(v, ("sync", "async"))),
        "eval_episodes": Field(int, 100, "episodes of the final evaluation (and of zoo eval)", ge=1),
        "eval_seed": Field(int, 1_000_000, "seed of the evaluation episodes (apart from training seeds)"),
        "eval_epsilon": Field(NUM, 0.0, "exploration during evaluation (0.05 is usual on Atari)", **PROB),
        "eval_num_envs": Field(int, 10, "vectorised evaluation envs", ge=1),
    }
    ENGINE_KEYS = {"train": ("batch_size", "grad_clip", "amp", "seed", "deterministic", "device", "threads",
                             "log_every", "ckpt_every", "ckpt_min_seconds", "max_minutes")}
    MOVED = {"data.algo": "algo"}
    smoke_overrides = ("algo.total_steps=64", "algo.learning_starts=32", "algo.buffer_size=256", "algo.eval_every=0",
                       "data.num_envs=2", "data.eval_episodes=1", "data.eval_num_envs=1", "train.log_every=16",
                       "train.ckpt_every=32")
    smoke_loss_decreases = False  # TD targets move with the target network: the loss need not fall in 64 steps

    def sections(self) -> dict:
        """data (the environment and the evaluation protocol) and algo (DQN's hyper-parameters)."""
        return {"data": self.DATA_SCHEMA, "algo": ALGO_SCHEMA}

    # ----------------------------------------------------------------- data and model
    def build_data(self, cfg: dict, ctx) -> Data:
        _check_config(cfg, ctx.recipe["algo"])
        src = env_source(cfg["env"], cfg["env_kwargs"], cfg["max_episode_steps"])
        self._check_pretrained_spaces(ctx.recipe["model"], src)
        evals = EvalEnvs(src, cfg["eval_episodes"], cfg["eval_seed"], cfg["eval_epsilon"], cfg["eval_num_envs"])
        spec = {**src.describe(), "evaluation": {"episodes": cfg["eval_episodes"], "seed": cfg["eval_seed"],
                                                 "epsilon": cfg["eval_epsilon"], "policy": "greedy"}}
        return Data(train=src, val=None, test=evals, info={"input_spec": spec})

    @staticmethod
    def _check_pretrained_spaces(mcfg: dict, src: EnvSource) -> None:
        """Fine-tuning needs an env with the spaces the weights were trained on; say so before training."""
        pretrained = mcfg.get("pretrained")
        if not pretrained or not isinstance(pretrained, str):
            return
        from zoo import weights as W

        tag = pretrained if "." in pretrained else f"{mcfg['name']}.{pretrained}"
        if tag not in W.load_index():
            return  # a folder path: zoo.create checks the state dict
        args = W.get_card(tag)["model_args"]
        if list(args["obs_shape"]) != list(src.obs_shape) or args["n_actions"] != src.n_actions:
            raise ValueError(f"data.env={src.env_id!r} has observations {list(src.obs_shape)} and {src.n_actions} "
                             f"actions, but {tag} was trained on {list(args['obs_shape'])} and "
                             f"{args['n_actions']}: fine-tune on an env with the same spaces")

    def model_args(self, data: Data) -> dict:
        src: EnvSource = data.train
        return {"obs_shape": list(src.obs_shape), "n_actions": src.n_actions,
                "obs_scale": 1 / 255 if is_atari(src.env_id) else 1.0}

    def card_extras(self, data: Data) -> dict:
        out = {"input_spec": data.info["input_spec"], "labels": None}
        return {**out, **(data.fitted.to_card() if data.fitted is not None else {})}  # the ReturnCurves

    # ----------------------------------------------------------------- training
    def fit(self, model, data: Data, ctx) -> dict:
        """DQN's steps (collect, update, evaluate) run by the engine's `Loop`, which owns the position in env
        steps, checkpoints, best weights, the deadline and the logs."""
        cfg, tcfg, algo = ctx.recipe["data"], ctx.recipe["train"], ctx.recipe["algo"]
        src: EnvSource = data.train
        device = ctx.device
        num_envs, total, batch = cfg["num_envs"], algo["total_steps"], tcfg["batch_size"]
        model.to(device).train()
        target = copy.deepcopy(model).eval().requires_grad_(False)
        opt = build_optimizer(model, ctx.recipe["optim"])
        n_updates = max(1, (total - algo["learning_starts"]) * algo["gradient_steps"] // algo["train_every"])
        sched = build_scheduler(opt, ctx.recipe["schedule"], n_updates, 1)
        obs_dtype = torch.uint8 if src.obs_dtype in ("uint8", "bool") else torch.float32
        buffer = ReplayBuffer(algo["buffer_size"], num_envs, src.obs_shape, obs_dtype)
        gen = torch.Generator().manual_seed(tcfg["seed"])
        envs = src.make_vector(num_envs, asynchronous=cfg["vector"] == "async")
        snapshots = cfg["vector"] == "sync" and _env_snapshot_works(src)
        loop = Loop(ctx, total=total, unit="env steps", log_every=tcfg["log_every"],
                    eval_every=algo["eval_every"], ckpt_every=tcfg["ckpt_every"] or max(num_envs, total // 10),
                    ckpt_min_seconds=tcfg["ckpt_min_seconds"], stop_at=algo["stop_return"],
                    position={"updates": 0, "episodes": 0, "since_update": 0, "update_seconds": 0.0})
        pos = loop.pos
        run = {"envs": envs, "ep_ret": np.zeros(num_envs), "ep_len": np.zeros(num_envs, dtype=np.int64),
               "curve": [], "losses": [], "qs": [], "finished": []}
        ckpt = loop.restore()
        if ckpt is None:
            run["obs"], _ = envs.reset(seed=tcfg["seed"])
        else:
            model.load_state_dict(ckpt["model"])
            target.load_state_dict(ckpt["target"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            run["curve"] = ckpt["curve"]
            gen.set_state(ckpt["generator"])
            if ckpt["buffer"] is not None:
                buffer.load_state_dict(ckpt["buffer"])
            if ckpt["envs"] is not None:
                envs.close()
                run["envs"] = pickle.loads(ckpt["envs"].numpy().tobytes())
                run["obs"] = ckpt["obs"].numpy()
                run["ep_ret"], run["ep_len"] = ckpt["ep_ret"].numpy().copy(), ckpt["ep_len"].numpy().copy()
            else:  # the interrupted episodes cannot be rebuilt: start new ones, seeded by the step count
                run["obs"], _ = envs.reset(seed=tcfg["seed"] + 7919 * pos["step"])

        def epsilon(step: int) -> float:
            decay = max(1.0, algo["eps_fraction"] * total)
            return algo["eps_end"] + (algo["eps_start"] - algo["eps_end"]) * max(0.0, 1.0 - step / decay)

        def update() -> None:
            """One TD update on a replay minibatch, then the target network's copy or Polyak step."""
            sample = buffer.sample(batch, algo["n_step"], algo["gamma"], gen)
            with ctx.autocast():
                q, y = td_targets(model, target, [x.to(device, non_blocking=True) for x in sample], algo["double"])
            loss = F.smooth_l1_loss(q, y) if algo["loss"] == "huber" else F.mse_loss(q, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tcfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            opt.step()
            sched.step()
            pos["updates"] += 1
            if algo["tau"] < 1.0:
                with torch.no_grad():
                    for tp, p in zip(target.parameters(), model.parameters()):
                        tp.lerp_(p, algo["tau"])
            elif pos["updates"] % algo["target_update"] == 0:
                target.load_state_dict(model.state_dict())
            run["losses"].append(loss.detach())
            run["qs"].append(q.detach().mean())

        def step() -> int:
            """Every env takes an epsilon-greedy action into the replay buffer; then the due rounds of updates."""
            obs = run["obs"]
            actions = model.act(obs, epsilon(pos["step"]), gen).cpu().numpy()
            next_obs, rewards, term, trunc, info = run["envs"].step(actions)
            done = term | trunc
            stored_next = next_obs
            if done.any():  # same-step autoreset: next_obs already starts the next episode there
                stored_next = next_obs.copy()
                for i in np.flatnonzero(done):
                    stored_next[i] = info["final_obs"][i]
            learn_r = np.sign(rewards) if algo["reward_clip"] else rewards
            buffer.add(obs, actions, learn_r.astype(np.float32), stored_next, term, done)
            ep_ret, ep_len = run["ep_ret"], run["ep_len"]
            ep_ret += rewards
            ep_len += 1
            for i in np.flatnonzero(done):
                run["finished"].append(float(ep_ret[i]))
                ep_ret[i], ep_len[i] = 0.0, 0
            pos["episodes"] += int(done.sum())
            run["obs"] = next_obs
            if pos["step"] + num_envs >= algo["learning_starts"] and buffer.can_sample(algo["n_step"]):
                pos["since_update"] += num_envs
                t_update = time.perf_counter()
                while pos["since_update"] >= algo["train_every"]:
                    pos["since_update"] -= algo["train_every"]
                    for _ in range(algo["gradient_steps"]):
                        update()
                pos["update_seconds"] += time.perf_counter() - t_update
            return num_envs

        rates = {"t": time.perf_counter(), "step": pos["step"], "updates": pos["updates"]}

        def record() -> dict:
            now = time.perf_counter()
            rec = {"step": pos["step"], "updates": pos["updates"], "episodes": pos["episodes"],
                   "epsilon": epsilon(pos["step"]), "lr": opt.param_groups[0]["lr"],
                   "steps_per_s": (pos["step"] - rates["step"]) / max(1e-9, now - rates["t"]),
                   "updates_per_s": (pos["updates"] - rates["updates"]) / max(1e-9, now - rates["t"])}
            if run["losses"]:
                rec["loss"] = float(torch.stack(run["losses"]).mean())
                rec["q_mean"] = float(torch.stack(run["qs"]).mean())
            if run["finished"]:
                rec["return_mean"] = float(np.mean(run["finished"]))
                run["curve"].append([pos["step"], rec["return_mean"]])
            loop.show(ret=f"{rec.get('return_mean', float('nan')):.1f}", eps=f"{rec['epsilon']:.2f}")
            run.update(losses=[], qs=[], finished=[])
            rates.update(t=now, step=pos["step"], updates=pos["updates"])
            return rec

        def evaluate() -> dict:
            """Greedy episodes on seeds apart from the final evaluation's, new ones each time."""
            return run_episodes(model, src, algo["eval_episodes"], cfg["eval_seed"] + 10_007 * (pos["evals"] + 1),
                                cfg["eval_epsilon"], cfg["eval_num_envs"])

        def state() -> dict:
            return {"model": model.state_dict(), "target": target.state_dict(), "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(), "curve": run["curve"], "generator": gen.get_state(),
                    "buffer": buffer.state_dict() if algo["save_buffer"] else None,
                    "envs": torch.frombuffer(bytearray(pickle.dumps(run["envs"])), dtype=torch.uint8)
                    if snapshots else None,
                    "obs": torch.from_numpy(np.asarray(run["obs"]).copy()),
                    "ep_ret": torch.from_numpy(run["ep_ret"].copy()), "ep_len": torch.from_numpy(run["ep_len"].copy())}

        info = loop.run(step, state=state, record=record, evaluate=evaluate if algo["eval_every"] else None,
                        keep=model)
        run["envs"].close()
        if algo["keep_best"]:
            loop.load_best(model)
        logged = _logged_curves(ctx.run_dir / "metrics.jsonl") if ctx.run_dir else None  # resumed runs too
        data.fitted = ReturnCurves(train=_thin(run["curve"], 100),
                                   val=_thin(logged["val"], 100) if logged and logged["val"] else [])
        return {**info, "update_seconds": pos["update_seconds"], "env_steps": pos["step"], "updates": pos["updates"],
                "episodes": pos["episodes"], "best_eval_return": pos["best"],
                "stopped_early": pos["stopped_by"] == "stop_at", "env_snapshots": snapshots}

    def evaluate(self, model, dataset: EvalEnvs, ctx) -> dict[str, float]:
        return run_episodes(model, dataset.source, dataset.episodes, dataset.seed, dataset.epsilon, dataset.num_envs)

    # ----------------------------------------------------------------- use
    def finetune_overrides(self, data_path: str) -> list[str]:
        """`zoo finetune dqn --data ENV`: ENV is a gymnasium id or package.module:EnvClass."""
        return [f"data.env={data_path}"]

    def _source_for(self, model, env_id: str | None) -> EnvSource:
        spec = getattr(model, "pretrained_cfg", {}).get("input_spec") or {}
        env_id = env_id or spec.get("env") or "CartPole-v1"
        if env_id == spec.get("env"):  # the card's env, with its kwargs and time limit
            src = env_source(env_id, spec.get("env_kwargs"), spec.get("max_episode_steps"))
        else:
            src = env_source(env_id)
        if tuple(src.obs_shape) != model.obs_shape or src.n_actions != model.n_actions:
            raise ValueError(f"{env_id!r} has observations {list(src.obs_shape)} and {src.n_actions} actions; "
                             f"the model takes {list(model.obs_shape)} and {model.n_actions}")
        return src

    def sample_input(self, model) -> tuple:
        """A real first observation of the model's environment."""
        obs, _ = self._source_for(model, None).make().reset(seed=0)
        return (torch.as_tensor(np.asarray(obs), dtype=torch.float32).unsqueeze(0),)

    def predict(self, model, inputs: str | None, out_dir: Path, ctx=None) -> list[Path]:
        """One greedy episode as a GIF (on `inputs`, an env id, or the card's env) and the return curve."""
        import imageio.v2 as imageio

        src = self._source_for(model, inputs)
        frames, ret, length = play_episode(model, src, seed=0, max_frames=150)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = src.env_id.replace("/", "_").replace(":", "_")
        gif = out_dir / f"{name}_episode_return{ret:.0f}.gif"
        imageio.mimsave(gif, frames, duration=1 / 30, loop=0)
        paths = [gif]
        curve = training_curve(model)
        if curve is not None:
            paths.append(plot_curve(curve, out_dir / f"{name}_return_curve.png", src.env_id))
        return paths

    def draw_sample(self, model, out_path: Path) -> Path | None:
        """Four frames of a greedy episode with its return, as one PNG (the tour's gallery)."""
        plt = pyplot()
        src = self._source_for(model, None)
        frames, ret, length = play_episode(model, src, seed=0, max_frames=40)
        picks = [frames[i] for i in np.linspace(0, len(frames) - 1, 4).astype(int)]
        fig, axes = plt.subplots(1, 4, figsize=(12, 3))
        for ax, f in zip(axes, picks):
            ax.imshow(f)
            ax.axis("off")
        fig.suptitle(f"{src.env_id}: greedy episode, return {ret:.0f} in {length} steps")
        return save(fig, out_path, dpi=80)


def play_episode(model, source: EnvSource, seed: int = 0, max_frames: int = 400) -> tuple[list, float, int]:
    """(rgb frames, return, length) of one greedy episode; `max_frames` to twice that, evenly spread.

    Frames are rendered only at the kept steps (rendering costs more than stepping): every step at
    first, and each time the list reaches twice `max_frames` every other frame is dropped and the
    stride doubles. Frames smaller than 64 pixels (MinAtar's 10x10) are enlarged (nearest-neighbour).
    """
    env = source.make(render_mode="rgb_array")
    limit = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 100_000
    obs, _ = env.reset(seed=seed)
    frames, ret, t, done, every = [], 0.0, 0, False, 1
    model.eval()
    while not done and t < limit:
        if t % every == 0:
            frames.append(_viewable(env.render()))
            if len(frames) >= 2 * max_frames:
                frames, every = frames[::2], every * 2
        action = int(model.act(np.asarray(obs)[None])[0])
        obs, r, term, trunc, _ = env.step(action)
        ret += float(r)
        t += 1
        done = term or trunc
    frames.append(_viewable(env.render()))
    env.close()
    return frames, ret, t


def _viewable(frame) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:  # MinAtar renders floats in [0, 1]
        frame = (np.clip(frame, 0, 1) * 255).astype(np.uint8)
    scale = math.ceil(64 / min(frame.shape[:2]))
    return np.kron(frame, np.ones((scale, scale, 1), dtype=np.uint8)) if scale > 1 else frame


def _thin(points: list, n: int) -> list:
    if len(points) <= n:
        return [list(p) for p in points]
    idx = np.linspace(0, len(points) - 1, n).round().astype(int)
    return [list(points[i]) for i in idx]


def _logged_curves(metrics: Path) -> dict | None:
    """{"train": [[step, return]], "val": [[step, greedy return]]} from a run's metrics.jsonl."""
    if not metrics.is_file():
        return None
    train, val = [], []
    for line in metrics.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("split") == "val":
            val.append([rec["step"], rec["return_mean"]])
        elif "return_mean" in rec:
            train.append([rec["step"], rec["return_mean"]])
    return {"train": train, "val": val} if train else None


def training_curve(model) -> dict | None:
    """{"train": [[step, return]], "val": [[step, greedy return]], "card": {...}} from the run's metrics.jsonl,
    else the card's copies; "card" is the card's own greedy evaluation of the published weights."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    source = cfg.get("source")
    if not source or ":" in str(source).split("/")[0]:
        return None
    folder = Path(source)
    curve = _logged_curves(folder.parent / "metrics.jsonl")  # a run dir: <run>/model is the model's folder
    cfg_file = folder / "config.json"
    card = json.loads(cfg_file.read_text()) if cfg_file.is_file() else {}
    published = ReturnCurves.from_card(card)
    if curve is None and published is not None:
        curve = {"train": published.train, "val": published.val}
    if curve is None:
        return None
    metrics = card.get("metrics") or {}
    if "return_mean" in metrics:
        curve["card"] = {"mean": metrics["return_mean"], "std": metrics.get("return_std", 0.0),
                         "episodes": int(metrics.get("episodes", 0)), "target": (card.get("expect") or {}).get("value")}
    return curve


def plot_curve(curve: dict, path: Path, title: str) -> Path:
    """Training returns (epsilon-greedy, what the agent met while learning), the greedy evaluations made during
    training, and the card's figure: the published weights' greedy return (mean and std over its episodes)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.8))
    tr = np.asarray(curve["train"], dtype=float)
    ax.plot(tr[:, 0], tr[:, 1], lw=1.2, color="tab:blue", alpha=0.8,
            label="training episodes (epsilon-greedy, mean per log interval)")
    if curve.get("val"):
        va = np.asarray(curve["val"], dtype=float)
        ax.plot(va[:, 0], va[:, 1], "o-", ms=3, lw=1, color="tab:orange", label="greedy evaluation during training")
    card = curve.get("card")
    if card:
        x = tr[-1, 0]
        ax.errorbar([x], [card["mean"]], yerr=[card["std"]], fmt="D", ms=7, color="tab:red", capsize=4, zorder=5,
                    label=f"card: these weights, greedy, {card['episodes']} episodes: "
                          f"{card['mean']:.1f} ± {card['std']:.1f}")
        if card.get("target") is not None:
            ax.axhline(card["target"], ls="--", lw=0.8, color="grey", label=f"recipe target {card['target']:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return save(fig, path, dpi=100)


TASK = RLTask()
