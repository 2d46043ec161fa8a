"""Environments for the dqn family: any gymnasium id with Discrete actions, custom classes, Atari, MinAtar.

    src = env_source("CartPole-v1")                 # validates the spaces up front
    src.obs_shape, src.n_actions                    # (4,), 2
    envs = src.make_vector(8)                       # gymnasium SyncVectorEnv, same-step autoreset
    env = src.make(render_mode="rgb_array")         # one env, for recording

Accepted ids:
  - a registered gymnasium id ("CartPole-v1", "LunarLander-v3", "Acrobot-v1", ...);
  - "MinAtar/Breakout-v1" (PyPI minatar; registered here, observations moved channels-first);
  - "ALE/Pong-v5" (PyPI ale-py): the Atari wrappers of Mnih et al. 2015 are applied (no-op starts,
    frame skip 4 with max-pooling, 84x84 greyscale, 4 stacked frames);
  - "package.module:EnvClass": a gym.Env subclass, built as EnvClass(**env_kwargs);
  - "package.module:Env-v0": gymnasium's own form (importing the module registers the id).
Anything else, a continuous (Box) or multi-discrete action space, or an observation that is not a
Box, is a ValueError naming the id and what was expected, raised before training starts.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
from dataclasses import dataclass, field

import numpy as np

from zoo.deps import require

ATARI_STACK = 4


def _register_namespace(env_id: str) -> None:
    """Register the envs of the packages whose ids gymnasium does not know until they are imported."""
    gym = require("gymnasium", "rl")

    if env_id.startswith("MinAtar/") and env_id not in gym.registry:
        # registers through gymnasium's plugin hook only when asked; do it here
        require("minatar.gym", "rl").register_envs()
    elif (env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")) and env_id not in gym.registry:
        gym.register_envs(require("ale_py", "rl"))


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/") or env_id.endswith("NoFrameskip-v4")


def _hwc_to_chw(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.moveaxis(obs, -1, 0), dtype=np.uint8)


def _channels_first(env):
    """MinAtar gives (10, 10, C) booleans; the CNN wants (C, 10, 10). Returned as uint8 0/1.

    A module-level function rather than a lambda keeps the wrapped env picklable (exact resume).
    """
    gym = require("gymnasium", "rl")

    h, w, c = env.observation_space.shape
    return gym.wrappers.TransformObservation(env, _hwc_to_chw, gym.spaces.Box(0, 1, (c, h, w), np.uint8))


def build_env(env_id: str, env_kwargs: dict | None = None, max_episode_steps: int | None = None,
              render_mode: str | None = None):
    """One environment with zoo's preprocessing for `env_id` (see the module docstring)."""
    gym = require("gymnasium", "rl")

    kwargs = dict(env_kwargs or {})
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if render_mode == "rgb_array":  # off-screen: SDL needs no display or sound server (and says nothing about it)
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    module, colon, name = env_id.partition(":")
    if colon:
        try:
            mod = importlib.import_module(module)
        except ImportError as e:
            raise ValueError(f"data.env={env_id!r}: cannot import module {module!r} ({e})") from e
        cls = getattr(mod, name, None)
        if isinstance(cls, type):
            if not issubclass(cls, gym.Env):
                raise ValueError(f"data.env={env_id!r}: {name} is not a gymnasium.Env subclass")
            env = cls(**kwargs)
            env = gym.wrappers.PassiveEnvChecker(env)
            return gym.wrappers.TimeLimit(env, max_episode_steps) if max_episode_steps else env
        env_id = name  # gymnasium's "module:Env-v0": the import above registered it
    _register_namespace(env_id)
    atari = is_atari(env_id)
    if atari:
        kwargs.setdefault("frameskip", 1)  # AtariPreprocessing skips frames itself (and max-pools)
    try:
        env = gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)
    except gym.error.Error as e:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"data.env: unknown environment {env_id!r} ({e}){hint}") from e
    if atari:
        env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84,
                                              terminal_on_life_loss=False, grayscale_obs=True)
        env = gym.wrappers.FrameStackObservation(env, ATARI_STACK)
    elif env_id.startswith("MinAtar/"):
        env = _channels_first(env)
    return env


def _check_spaces(env_id: str, env) -> tuple[tuple[int, ...], int]:
    gym = require("gymnasium", "rl")

    act, obs = env.action_space, env.observation_space
    if not isinstance(act, gym.spaces.Discrete):
        kind = "continuous" if isinstance(act, gym.spaces.Box) else type(act).__name__
        raise ValueError(f"data.env={env_id!r} has a {kind} action space {act}; DQN needs a Discrete "
                         "action space (one Q-value per action)")
    if int(act.start) != 0:
        raise ValueError(f"data.env={env_id!r}: Discrete actions must start at 0, got start={act.start}")
    if not isinstance(obs, gym.spaces.Box):
        raise ValueError(f"data.env={env_id!r} has a {type(obs).__name__} observation space {obs}; "
                         "the Q-networks read Box (array) observations")
    return tuple(int(s) for s in obs.shape), int(act.n)


@dataclass
class EnvSource:
    """A validated environment recipe: builds single or vectorised envs with the same spaces.

    Args:
        env_id: an id accepted by :func:`build_env`.
        env_kwargs: keyword arguments for gymnasium.make (or the custom class).
        max_episode_steps: a TimeLimit (truncation) on top of the env's own, or None.
    """

    env_id: str
    env_kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = None
    obs_shape: tuple[int, ...] = ()
    obs_dtype: str = "float32"
    n_actions: int = 0

    def make(self, render_mode: str | None = None):
        return build_env(self.env_id, self.env_kwargs, self.max_episode_steps, render_mode)

    def make_vector(self, num_envs: int, asynchronous: bool = False):
        """`num_envs` copies in a gymnasium vector env with same-step autoreset.

        Same-step autoreset returns the first observation of the next episode at once and the
        last one of the finished episode in info["final_obs"], so every step is a valid transition.
        A functools.partial (not a lambda) builds each copy, so a SyncVectorEnv pickles (exact resume).
        """
        gym = require("gymnasium", "rl")

        fns = [functools.partial(build_env, self.env_id, self.env_kwargs, self.max_episode_steps)] * num_envs
        mode = gym.vector.AutoresetMode.SAME_STEP
        if asynchronous:
            return gym.vector.AsyncVectorEnv(fns, autoreset_mode=mode)
        return gym.vector.SyncVectorEnv(fns, autoreset_mode=mode)

    def preprocessing(self) -> list[str]:
        if is_atari(self.env_id):
            return ["noop_max=30", "frame_skip=4 (max over last 2 frames)", "greyscale 84x84",
                    f"stack {ATARI_STACK} frames -> (4, 84, 84) uint8", "obs_scale=1/255 inside the model"]
        if self.env_id.startswith("MinAtar/"):
            return ["(10, 10, C) bool -> (C, 10, 10) uint8 (channels first)"]
        return ["none (raw observation vector)"]

    def describe(self) -> dict:
        """What the weight card records as the model's input spec."""
        return {"env": self.env_id, "env_kwargs": self.env_kwargs, "max_episode_steps": self.max_episode_steps,
                "obs_shape": list(self.obs_shape), "obs_dtype": self.obs_dtype, "n_actions": self.n_actions,
                "preprocessing": self.preprocessing()}


def env_source(env_id: str, env_kwargs: dict | None = None, max_episode_steps: int | None = None) -> EnvSource:
    """Build one env to check its spaces; ValueError for unknown ids or unsupported spaces."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"data.env: expected a gymnasium id or 'package.module:EnvClass', got {env_id!r}")
    env = build_env(env_id, env_kwargs, max_episode_steps)
    try:
        shape, n = _check_spaces(env_id, env)
        dtype = np.dtype(env.observation_space.dtype).name
    finally:
        env.close()
    return EnvSource(env_id, dict(env_kwargs or {}), max_episode_steps, shape, dtype, n)
