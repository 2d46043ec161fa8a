"""Multi-head attention on PyTorch's fused `scaled_dot_product_attention`; a pre-norm Transformer layer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.blocks.mlp import Mlp


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Bool masks follow nn.MultiheadAttention (True = blocked); SDPA wants an additive float mask or
    # a bool mask with the opposite meaning, so convert to additive -inf/0 once.
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, float("-inf"))
    return mask.to(dtype)


class MultiHeadAttention(nn.Module):
    r"""Multi-head scaled dot-product attention (Vaswani et al. 2017), batch-first.

    .. math::
        \mathrm{head}_h = \mathrm{softmax}\!\Big(\frac{(Q W^Q_h)(K W^K_h)^\top}{\sqrt{d}} + M\Big) V W^V_h,
        \qquad y = [\mathrm{head}_1, \dots, \mathrm{head}_H]\, W^O

    with :math:`d = \text{dim} / H`. Runs on :func:`torch.nn.functional.scaled_dot_product_attention`,
    which picks a flash / memory-efficient kernel where one applies.

    Masks follow :class:`torch.nn.MultiheadAttention`: a bool mask is True where attention is
    *blocked*; a float mask is added to the scores. A query whose keys are all blocked yields NaN.

    Args:
        dim: C, the query (and output) width; split into `num_heads` heads.
        num_heads: H; must divide `dim`.
        dropout: dropout on the attention weights (training only).
        kv_dim: width of keys/values when it differs from `dim` (cross-attention).

    Shapes:
        - query: :math:`(B, L_q, C)`
        - key, value: :math:`(B, L_k, C_{kv})`; default to `query` (self-attention)
        - attn_mask: :math:`(L_q, L_k)`, :math:`(B, L_q, L_k)` or :math:`(B, H, L_q, L_k)`
        - key_padding_mask: :math:`(B, L_k)`, True at padded keys
        - output: :math:`(B, L_q, C)`
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0, kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"MultiHeadAttention needs dim divisible by num_heads, got {dim} and {num_heads}"
            )
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(kv_dim, dim)
        self.v_proj = nn.Linear(kv_dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, length, c = x.shape
        return x.view(b, length, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if query.ndim != 3:
            raise ValueError(f"MultiHeadAttention expects query of shape (B, L, C), got {tuple(query.shape)}")
        key = query if key is None else key
        value = key if value is None else value
        q, k, v = (
            self._heads(self.q_proj(query)),
            self._heads(self.k_proj(key)),
            self._heads(self.v_proj(value)),
        )
        mask = None
        if attn_mask is not None:
            mask = _additive(attn_mask, q.dtype)
            if mask.ndim == 3:  # (B, Lq, Lk) -> broadcast over heads
                mask = mask.unsqueeze(1)
        if key_padding_mask is not None:
            padding = _additive(key_padding_mask, q.dtype)[:, None, None, :]
            mask = padding if mask is None else mask + padding
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))


class TransformerLayer(nn.Module):
    r"""A pre-norm Transformer layer: self-attention, optional cross-attention, then an MLP.

    .. math::
        x &\leftarrow x + \mathrm{SA}(\mathrm{LN}(x) + p,\ \mathrm{LN}(x) + p,\ \mathrm{LN}(x)) \\
        x &\leftarrow x + \mathrm{CA}(\mathrm{LN}(x) + p,\ m + p_m,\ m) \quad \text{(if cross\_attention)} \\
        x &\leftarrow x + \mathrm{MLP}(\mathrm{LN}(x))

    Pre-norm (Xiong et al. 2020) trains without warm-up tricks; the positional embeddings
    :math:`p, p_m` are added to queries and keys only, as in DETR/BEVFormer decoders.

    Args:
        dim: C.
        num_heads: attention heads.
        mlp_ratio: MLP hidden width as a multiple of C (GELU activation).
        dropout: dropout on attention weights, residual branches and the MLP.
        cross_attention: add a cross-attention sub-layer over a `memory` sequence.
        memory_dim: width of `memory` when it differs from `dim`.

    Shapes:
        - x, pos: :math:`(B, L, C)`
        - memory, memory_pos: :math:`(B, L_m, C_m)`
        - attn_mask: :math:`(L, L)` or :math:`(B, L, L)`; key_padding_mask: :math:`(B, L)`
        - memory_key_padding_mask: :math:`(B, L_m)`
        - output: :math:`(B, L, C)`
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        cross_attention: bool = False,
        memory_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, num_heads, dropout)
        self.cross_attn: MultiHeadAttention | None = None
        if cross_attention:
            self.norm2 = nn.LayerNorm(dim)
            self.cross_attn = MultiHeadAttention(dim, num_heads, dropout, kv_dim=memory_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, act="gelu", dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        pos: torch.Tensor | None = None,
        memory_pos: torch.Tensor | None = None,
        attn_mask: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        memory_key_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h = self.norm1(x)
        qk = h if pos is None else h + pos
        x = x + self.drop(self.self_attn(qk, qk, h, attn_mask=attn_mask, key_padding_mask=key_padding_mask))
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError(
                    "TransformerLayer(cross_attention=True) expects memory of shape (B, L_m, C_m)"
                )
            h = self.norm2(x)
            q = h if pos is None else h + pos
            k = memory if memory_pos is None else memory + memory_pos
            x = x + self.drop(self.cross_attn(q, k, memory, key_padding_mask=memory_key_padding_mask))
        return x + self.drop(self.mlp(self.norm3(x)))
