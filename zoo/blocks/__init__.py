"""Shared layers for every zoo model family; convolution blocks serve 1D, 2D and 3D via `spatial_dims`."""

from zoo.blocks.attention import MultiHeadAttention, TransformerLayer
from zoo.blocks.conv import Bottleneck, ConvNormAct, ResidualBlock, SqueezeExcite
from zoo.blocks.encoding import FourierFeatures, SinePositionalEncoding2D, sinusoidal_embedding_2d
from zoo.blocks.factories import LayerNormNd, get_act, get_norm
from zoo.blocks.hash_encoding import HashEncoding
from zoo.blocks.mlp import Mlp

__all__ = [
    "Bottleneck",
    "ConvNormAct",
    "FourierFeatures",
    "HashEncoding",
    "LayerNormNd",
    "Mlp",
    "MultiHeadAttention",
    "ResidualBlock",
    "SinePositionalEncoding2D",
    "SqueezeExcite",
    "TransformerLayer",
    "get_act",
    "get_norm",
    "sinusoidal_embedding_2d",
]
