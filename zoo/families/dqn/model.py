"""Q-networks for DQN (Mnih et al. 2015) with the dueling head of Wang et al. 2016 as an option.

    import zoo
    model = zoo.create("dqn", pretrained=True)              # CartPole-v1 agent (dqn.cartpole)
    q = model(obs)                                          # (B, *obs_shape) -> (B, n_actions)
    actions = model.act(obs, epsilon=0.0)                   # greedy (or epsilon-greedy) actions, (B,)

The file reads top to bottom: the three observation encoders (an MLP for vectors, the Nature CNN
for 84x84 Atari frames, the small CNN of MinAtar's paper for 10x10 grids), the Q-network that puts
a plain or dueling head on one of them, and the registered builder. The training algorithm (replay,
target network, Double DQN, n-step returns) lives in zoo/families/dqn/task.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from zoo.blocks import ConvNormAct, Mlp
from zoo.registry import register_model
from zoo.utils import check_tensor

ENCODERS = ("auto", "mlp", "nature", "minatar")
DEFAULT_HIDDEN = {"mlp": 256, "nature": 512, "minatar": 128}


def pick_encoder(obs_shape: Sequence[int]) -> str:
    """"mlp" for vectors (or any non-image shape), "nature" for (C, H, W) of at least 36x36 (the
    smallest input its 8/4 + 4/2 + 3/1 convolutions accept), "minatar" for smaller grids."""
    if len(obs_shape) != 3:
        return "mlp"
    return "nature" if min(obs_shape[1:]) >= 36 else "minatar"


def nature_cnn(in_chans: int, hidden: int, size: Sequence[int]) -> nn.Sequential:
    """Mnih et al. 2015: 32x8x8/4, 64x4x4/2, 64x3x3/1 convolutions, then a `hidden`-unit layer.

    Shapes: (B, C, H, W) -> (B, hidden); 84x84 inputs give a 64x7x7 map before the linear layer.
    """
    convs = nn.Sequential(
        ConvNormAct(in_chans, 32, 8, 4, norm="none", padding=0),
        ConvNormAct(32, 64, 4, 2, norm="none", padding=0),
        ConvNormAct(64, 64, 3, 1, norm="none", padding=0),
        nn.Flatten(),
    )
    flat = convs(torch.zeros(1, in_chans, *size)).shape[1]
    return nn.Sequential(convs, nn.Linear(flat, hidden), nn.ReLU())


def minatar_cnn(in_chans: int, hidden: int, size: Sequence[int]) -> nn.Sequential:
    """Young & Tian 2019: one 16x3x3/1 convolution and a `hidden`-unit layer (128 in the paper).

    Shapes: (B, C, 10, 10) -> (B, hidden).
    """
    h, w = size
    return nn.Sequential(ConvNormAct(in_chans, 16, 3, 1, norm="none", padding=0), nn.Flatten(),
                         nn.Linear(16 * (h - 2) * (w - 2), hidden), nn.ReLU())


class QNetwork(nn.Module):
    r"""An observation encoder and a Q-value head: one Q-value per discrete action.

    With `dueling=True` the head has a state-value stream and an advantage stream (Wang et al. 2016),
    sharing the encoder:

    .. math::
        Q(s, a) = V(s) + A(s, a) - \frac{1}{|\mathcal{A}|} \sum_{a'} A(s, a')

    Args:
        obs_shape: the observation shape without the batch dimension, e.g. [4] or [4, 84, 84].
        n_actions: size of the Discrete action space.
        encoder: "auto" (see :func:`pick_encoder`), "mlp", "nature" or "minatar".
        hidden: width of the hidden layers (None: 256 mlp, 512 nature, 128 minatar).
        num_layers: hidden layers of the MLP encoder (ignored by the CNNs).
        dueling: use the dueling head.
        obs_scale: observations are multiplied by this first (1/255 for Atari's uint8 frames), so the
            model takes observations exactly as the environment gives them.

    Shapes:
        - obs: :math:`(B, *obs\_shape)`, float (convert uint8/bool frames with `.float()`)
        - output: :math:`(B, n\_actions)`
    """

    def __init__(self, obs_shape: Sequence[int], n_actions: int, encoder: str = "auto", hidden: int | None = None,
                 num_layers: int = 2, dueling: bool = False, obs_scale: float = 1.0) -> None:
        super().__init__()
        self.obs_shape = tuple(int(s) for s in obs_shape)
        if not self.obs_shape or any(s < 1 for s in self.obs_shape):
            raise ValueError(f"dqn: obs_shape must be a non-empty list of positive sizes, got {list(obs_shape)}")
        if n_actions < 1:
            raise ValueError(f"dqn: n_actions must be >= 1, got {n_actions}")
        if encoder not in ENCODERS:
            raise ValueError(f"dqn: encoder must be one of {ENCODERS}, got {encoder!r}")
        self.encoder = pick_encoder(self.obs_shape) if encoder == "auto" else encoder
        if self.encoder != "mlp" and len(self.obs_shape) != 3:
            raise ValueError(f"dqn: encoder {self.encoder!r} needs (C, H, W) observations, got {self.obs_shape}")
        self.n_actions = n_actions
        self.dueling = dueling
        self.obs_scale = obs_scale
        width = hidden or DEFAULT_HIDDEN[self.encoder]
        if self.encoder == "mlp":
            self.body = nn.Sequential(nn.Flatten(), Mlp(math.prod(self.obs_shape), width, width, num_layers,
                                                        out_act="relu"))
        elif self.encoder == "nature":
            self.body = nature_cnn(self.obs_shape[0], width, self.obs_shape[1:])
        else:
            self.body = minatar_cnn(self.obs_shape[0], width, self.obs_shape[1:])
        self.head = nn.Linear(width, n_actions)  # the advantage stream when dueling
        self.value = nn.Linear(width, 1) if dueling else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = check_tensor(obs, "obs", ("B", *self.obs_shape), owner="dqn", like=self)
        if self.obs_scale != 1.0:
            obs = obs * self.obs_scale
        features = self.body(obs)
        q = self.head(features)
        if self.value is not None:
            q = self.value(features) + q - q.mean(dim=1, keepdim=True)
        return q

    @torch.no_grad()
    def act(self, obs, epsilon: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """Epsilon-greedy actions for a batch of observations.

        Args:
            obs: (B, *obs_shape) array or tensor of any numeric dtype (converted to float here).
            epsilon: probability of a uniformly random action, per row.
            generator: a CPU torch.Generator for the random draws (reproducible exploration).

        Returns:
            LongTensor (B,) on the model's device.
        """
        device = self.head.weight.device
        obs = torch.as_tensor(obs).to(device, torch.float32)
        greedy = self(obs).argmax(dim=1)
        if epsilon <= 0.0:
            return greedy
        n = greedy.shape[0]
        explore = torch.rand(n, generator=generator) < epsilon
        random = torch.randint(self.n_actions, (n,), generator=generator)
        return torch.where(explore.to(device), random.to(device), greedy)

    def example_inputs(self, batch_size: int = 2) -> tuple:
        return (torch.rand(batch_size, *self.obs_shape),)


register_model("dqn", task="rl", default_tag="dqn.cartpole",
               input_spec={"env": "CartPole-v1", "obs_shape": [4], "n_actions": 2, "preprocessing": ["none"]},
               model_args={"obs_shape": (4,), "n_actions": 2},  # CartPole's, the default weights'
               description="DQN Q-network (MLP / Nature CNN / MinAtar CNN, optional dueling head) for "
                           "Discrete-action envs.")(QNetwork)
