"""A multi-layer perceptron over the last dimension."""

from __future__ import annotations

from torch import nn

from zoo.blocks.factories import get_act


class Mlp(nn.Sequential):
    r"""Stacked Linear layers with an activation (and dropout) between them, on the last dimension.

    .. math::
        y = \mathrm{out\_act}(W_n\, \mathrm{drop}(\mathrm{act}(\cdots \mathrm{drop}(\mathrm{act}(W_1 x)))))

    Args:
        in_features: C_in.
        hidden_features: width of every hidden layer.
        out_features: C_out.
        num_layers: number of Linear layers; 1 is a single Linear(C_in, C_out).
        act: a :func:`get_act` name for the hidden layers.
        dropout: dropout after each hidden activation.
        out_act: a :func:`get_act` name applied to the output.

    Shapes:
        - input: :math:`(*, C_{in})`
        - output: :math:`(*, C_{out})`
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int,
        num_layers: int = 2,
        act: str = "relu",
        dropout: float = 0.0,
        out_act: str = "none",
    ) -> None:
        if num_layers < 1:
            raise ValueError(f"Mlp needs num_layers >= 1, got {num_layers}")
        widths = [in_features] + [hidden_features] * (num_layers - 1) + [out_features]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < num_layers - 1:
                layers.append(get_act(act))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
        if out_act.lower() != "none":
            layers.append(get_act(out_act))
        super().__init__(*layers)
