"""zoo.blocks: shapes, gradients, 1D/2D/3D parity and numerical references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks import (
    Bottleneck,
    ConvNormAct,
    FourierFeatures,
    HashEncoding,
    LayerNormNd,
    Mlp,
    MultiHeadAttention,
    ResidualBlock,
    SinePositionalEncoding2D,
    SqueezeExcite,
    TransformerLayer,
    get_act,
    get_norm,
    sinusoidal_embedding_2d,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --- factories -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("name", ["batch", "instance", "group", "layer", "none"])
def test_norms_keep_shape(name, spatial_dims):
    x = torch.randn(2, 12, *([5] * spatial_dims))
    assert get_norm(name, 12, spatial_dims)(x).shape == x.shape


def test_group_norm_uses_largest_dividing_group_count():
    assert get_norm("group", 64).num_groups == 32
    assert get_norm("group", 48).num_groups == 24
    assert get_norm("group", 6).num_groups == 6


def test_layer_norm_nd_normalises_channels_at_each_position():
    x = torch.randn(2, 8, 3, 4, 5)
    expected = F.layer_norm(x.movedim(1, -1), (8,), eps=1e-6).movedim(-1, 1)
    torch.testing.assert_close(LayerNormNd(8)(x), expected)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "none"])
def test_activations(name):
    x = torch.randn(10)
    assert get_act(name)(x).shape == x.shape


def test_unknown_names_raise_with_choices():
    with pytest.raises(ValueError, match="unknown norm 'bn'.*batch, instance"):
        get_norm("bn", 8)
    with pytest.raises(ValueError, match="unknown activation 'swish'.*silu"):
        get_act("swish")
    with pytest.raises(ValueError, match="spatial_dims must be 1, 2 or 3"):
        ConvNormAct(3, 8, spatial_dims=4)


# --- convolution blocks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_conv_norm_act_same_padding_and_stride(spatial_dims):
    x = torch.randn(2, 3, *([9] * spatial_dims))
    assert ConvNormAct(3, 8, spatial_dims=spatial_dims)(x).shape == (2, 8, *([9] * spatial_dims))
    assert ConvNormAct(3, 8, 3, 2, spatial_dims)(x).shape == (2, 8, *([5] * spatial_dims))
    assert ConvNormAct(3, 8, 5, dilation=2, spatial_dims=spatial_dims)(x).shape[2:] == x.shape[2:]


def test_conv_bias_only_without_norm():
    assert ConvNormAct(3, 8, norm="batch").conv.bias is None
    assert ConvNormAct(3, 8, norm="none").conv.bias is not None
    assert ConvNormAct(3, 8, norm="batch", bias=True).conv.bias is not None


def _copy_conv(src: ConvNormAct, dst: ConvNormAct, view_shape: tuple[int, ...]) -> None:
    with torch.no_grad():
        dst.conv.weight.copy_(src.conv.weight.view(view_shape))
        dst.norm.load_state_dict(src.norm.state_dict())


def test_conv_norm_act_3d_with_flat_kernel_matches_2d():
    # A 3D block whose kernel spans only (H, W), on a depth-1 volume, is the 2D block.
    block2d = ConvNormAct(4, 6, 3, stride=2, spatial_dims=2, norm="group", act="silu")
    block3d = ConvNormAct(4, 6, (1, 3, 3), stride=(1, 2, 2), spatial_dims=3, norm="group", act="silu")
    _copy_conv(block2d, block3d, (6, 4, 1, 3, 3))
    x = torch.randn(2, 4, 11, 13)
    torch.testing.assert_close(block3d(x.unsqueeze(2)).squeeze(2), block2d(x))


def test_conv_norm_act_2d_with_flat_kernel_matches_1d():
    block1d = ConvNormAct(4, 6, 5, spatial_dims=1, norm="instance", act="gelu")
    block2d = ConvNormAct(4, 6, (1, 5), spatial_dims=2, norm="instance", act="gelu")
    _copy_conv(block1d, block2d, (6, 4, 1, 5))
    x = torch.randn(2, 4, 17)
    torch.testing.assert_close(block2d(x.unsqueeze(2)).squeeze(2), block1d(x))


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("block", [ResidualBlock, Bottleneck])
def test_residual_blocks_shapes_and_gradients(block, spatial_dims):
    x = torch.randn(2, 8, *([6] * spatial_dims), requires_grad=True)
    net = block(8, 16, stride=2, spatial_dims=spatial_dims, norm="batch", act="relu", se_ratio=0.25)
    y = net(x)
    assert y.shape == (2, 16, *([3] * spatial_dims))
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_residual_shortcut_is_identity_when_shape_is_kept():
    assert isinstance(ResidualBlock(8, 8).shortcut, nn.Identity)
    assert isinstance(Bottleneck(16, 16).shortcut, nn.Identity)
    assert isinstance(ResidualBlock(8, 16).shortcut, ConvNormAct)
    with pytest.raises(ValueError, match="divisible by expansion"):
        Bottleneck(8, 10)


def test_residual_block_is_identity_plus_branch():
    net = ResidualBlock(4, 4, act="none", norm="none").eval()
    x = torch.randn(1, 4, 7, 7)
    torch.testing.assert_close(net(x), net.conv2(net.conv1(x)) + x)


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
def test_squeeze_excite_gates_channels(spatial_dims):
    se = SqueezeExcite(8, 0.25, spatial_dims)
    x = torch.rand(2, 8, *([4] * spatial_dims))
    y = se(x)
    assert y.shape == x.shape
    ratio = y / x  # one gate in (0, 1) per (sample, channel)
    flat = ratio.flatten(2)
    torch.testing.assert_close(flat, flat[..., :1].expand_as(flat))
    assert ((flat > 0) & (flat < 1)).all()


# --- MLP and attention -----------------------------------------------------------------------------------


def test_mlp_on_any_leading_dims():
    mlp = Mlp(5, 32, 3, num_layers=3, act="gelu", dropout=0.1, out_act="sigmoid")
    y = mlp(torch.randn(2, 7, 5))
    assert y.shape == (2, 7, 3) and ((y > 0) & (y < 1)).all()
    assert sum(isinstance(m, nn.Linear) for m in mlp) == 3
    assert isinstance(Mlp(5, 32, 3, num_layers=1)[0], nn.Linear) and len(Mlp(5, 32, 3, num_layers=1)) == 1
    with pytest.raises(ValueError, match="num_layers >= 1"):
        Mlp(5, 32, 3, num_layers=0)


def _naive_attention(mha: MultiHeadAttention, q_in, kv_in, blocked=None):
    """softmax(Q K^T / sqrt(d) + mask) V per head, written out by hand."""
    b, lq, c = q_in.shape
    h = mha.num_heads
    d = c // h
    q = mha.q_proj(q_in).view(b, lq, h, d).transpose(1, 2)
    k = mha.k_proj(kv_in).view(b, -1, h, d).transpose(1, 2)
    v = mha.v_proj(kv_in).view(b, -1, h, d).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / math.sqrt(d)
    if blocked is not None:
        scores = scores.masked_fill(blocked, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v
    return mha.out_proj(out.transpose(1, 2).reshape(b, lq, c))


def test_attention_matches_naive_softmax_reference():
    mha = MultiHeadAttention(16, 4)
    x = torch.randn(2, 5, 16)
    torch.testing.assert_close(mha(x), _naive_attention(mha, x, x), atol=1e-5, rtol=1e-5)


def test_attention_masks_match_reference():
    mha = MultiHeadAttention(16, 2, kv_dim=12)
    q, kv = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    causal = torch.ones(5, 7, dtype=torch.bool).triu(1)  # True = blocked
    padding = torch.zeros(2, 7, dtype=torch.bool)
    padding[1, 5:] = True
    blocked = causal[None, None] | padding[:, None, None, :]
    out = mha(q, kv, attn_mask=causal, key_padding_mask=padding)
    torch.testing.assert_close(out, _naive_attention(mha, q, kv, blocked), atol=1e-5, rtol=1e-5)
    # An additive float mask means the same as the bool one.
    additive = torch.zeros(5, 7).masked_fill(causal, float("-inf"))
    torch.testing.assert_close(mha(q, kv, attn_mask=additive, key_padding_mask=padding), out)


def test_transformer_layer_self_and_cross_attention():
    layer = TransformerLayer(16, 4, mlp_ratio=2.0, cross_attention=True, memory_dim=8)
    x = torch.randn(2, 6, 16, requires_grad=True)
    memory = torch.randn(2, 9, 8)
    y = layer(
        x, memory, pos=torch.randn(2, 6, 16), memory_key_padding_mask=torch.zeros(2, 9, dtype=torch.bool)
    )
    assert y.shape == x.shape
    y.sum().backward()
    assert all(p.grad is not None for p in layer.parameters())
    with pytest.raises(ValueError, match="expects memory"):
        layer(x)
    assert TransformerLayer(16, 4)(x).shape == x.shape
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, 4)


# --- encodings ------------------------------------------------------------------------------------------


def test_fourier_features_known_values():
    enc = FourierFeatures(2, num_frequencies=3)
    assert enc.out_dim == 2 + 2 * 3 * 2
    p = torch.tensor([[0.0, 0.5]])
    y = enc(p)[0]
    torch.testing.assert_close(y[:2], p[0])  # the input first
    # then, per frequency 2^k pi: sin over both coordinates, cos over both coordinates
    expected = []
    for k in range(3):
        f = 2**k * math.pi
        expected += [math.sin(0.0), math.sin(f * 0.5), math.cos(0.0), math.cos(f * 0.5)]
    torch.testing.assert_close(y[2:], torch.tensor(expected), atol=1e-6, rtol=0)
    linear = FourierFeatures(3, 4, include_input=False, log_sampling=False)
    torch.testing.assert_close(linear.frequencies, torch.tensor([1.0, 10 / 3, 17 / 3, 8.0]) * math.pi)
    assert linear(torch.randn(4, 5, 3)).shape == (4, 5, linear.out_dim) and linear.out_dim == 24


def test_sine_embedding_2d_layout_and_values():
    emb = sinusoidal_embedding_2d(4, 6, 16)
    assert emb.shape == (16, 4, 6)
    flat = SinePositionalEncoding2D(16)(4, 6, flatten=True)
    torch.testing.assert_close(flat, emb.flatten(1).T)
    rows = torch.arange(1, 5) / (4 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(emb[0, :, 0], rows.sin())  # first channel: sin of the row position
    torch.testing.assert_close(emb[1, :, 0], rows.cos())
    cols = torch.arange(1, 7) / (6 + 1e-6) * 2 * math.pi
    torch.testing.assert_close(emb[8, 0, :], cols.sin())  # second half: the column position
    with pytest.raises(ValueError, match="divisible by 4"):
        sinusoidal_embedding_2d(2, 2, 10)


def _small_hash(**kwargs) -> HashEncoding:
    args = dict(num_levels=8, features_per_level=2, log2_table_size=14, base_resolution=4, max_resolution=256)
    return HashEncoding(**(args | kwargs))


@pytest.mark.parametrize("in_dim", [2, 3])
def test_hash_encoding_shapes_and_gradients(in_dim):
    enc = _small_hash(in_dim=in_dim)
    assert enc.out_dim == 16
    x = torch.rand(3, 50, in_dim, requires_grad=True)
    y = enc(x)
    assert y.shape == (3, 50, 16)
    y.square().sum().backward()
    touched = enc.table.grad.abs().sum(-1) > 0
    assert touched.any(dim=1).all()  # every level's table receives gradient
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_hash_encoding_init_and_levels():
    enc = HashEncoding()  # paper defaults
    assert enc.table.shape == (16, 2**19, 2) and enc.table.abs().max() <= 1e-4
    assert enc.resolutions[0] == 16 and enc.resolutions[-1] == 2048
    assert enc.num_dense == 5  # (N + 1)^3 <= 2^19 for N = 16 ... 58


def test_hash_encoding_dense_levels_are_collision_free():
    enc = _small_hash(in_dim=2)
    level = 0  # 4 cells per axis: 5 x 5 vertices, dense
    n = int(enc.resolutions[level])
    vertices = torch.stack(torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij"), -1).view(-1, 1, 2)
    index = enc._corner_indices(vertices.expand(-1, enc.num_levels, 2))[:, level]  # (n^2, 4 corners)
    assert index.unique().numel() == (n + 1) ** 2
    assert index.max() < enc.table_size


def test_hash_encoding_is_continuous_across_cell_boundaries():
    enc = _small_hash()
    nn.init.uniform_(enc.table, -1, 1)  # large values so that jumps would show
    finest = int(enc.resolutions[-1])
    boundary = torch.randint(1, finest, (200, 3)) / finest  # on cell faces of the finest level
    eps = 1e-6
    jump = (enc(boundary + eps) - enc(boundary - eps)).abs().max()
    spread = (enc(torch.rand(200, 3)) - enc(torch.rand(200, 3))).abs().mean()
    assert jump < 1e-2 < spread


def test_hash_encoding_bounding_box_maps_to_unit_cube():
    box = ([-2.0, -1.0, 0.0], [2.0, 1.0, 4.0])
    boxed = _small_hash(bounding_box=box)
    unit = _small_hash()
    unit.load_state_dict(boxed.state_dict() | {"box": unit.box})
    x = torch.rand(20, 3)
    world = torch.tensor(box[0]) + x * (torch.tensor(box[1]) - torch.tensor(box[0]))
    torch.testing.assert_close(boxed(world), unit(x))
    with pytest.raises(ValueError, match=r"expects input of shape \(\*, 3\)"):
        unit(torch.rand(5, 2))
