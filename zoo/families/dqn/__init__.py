"""Reinforcement learning: DQN with a replay buffer on gymnasium, MinAtar and Atari environments.

Parts:
  model.py    QNetwork and the dqn builder
  task.py     rl (TASK): collect, update and evaluate; episode returns
  data.py     environments: env_source for gymnasium ids, MinAtar and Atari (the Mnih et al. wrappers)

Recipes: recipes/dqn/ (acrobot, cartpole, finetune, lunarlander, minatar_breakout, pong); `zoo
recipes` lists them, docs/models/dqn.md describes the family and its published weights.
"""
