"""Attention rollout / relevance on MViT (query/key/value pooling, skip
pooling, residual pooling, with and without cls token): the factorised
operators against dense matrices built here from the recorded attention
and the pooling modules, and a pooling operator worked by hand."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.explainers.attention_pooling import pool_geometry, pool_rows
from mmxai.testing.coverage import ModelSnapshot
from tests.tiny_models import PREPROCESSOR_3D, build
from mmaction.registry import MODELS


def mvit_cfg(cls: bool, residual: bool) -> dict:
    backbone = dict(type='MViT', arch=dict(embed_dims=8, num_layers=3,
                                           num_heads=1,
                                           downscale_indices=[1, 2]),
                    spatial_size=32, temporal_size=8,
                    adaptive_kv_stride=(1, 4, 4), with_cls_token=cls,
                    output_cls_token=cls, residual_pooling=residual)
    torch.manual_seed(0)
    bb = MODELS.build(copy.deepcopy(backbone)).eval()
    with torch.no_grad():
        feat = bb(torch.zeros(1, 3, 8, 32, 32))[-1]
    channels = (feat[0] if cls else feat).shape[1]
    return dict(type='Recognizer3D', backbone=backbone,
                cls_head=dict(type='MViTHead', num_classes=5,
                              in_channels=channels, with_cls_token=cls,
                              dropout_ratio=0.0, average_clips='prob'),
                data_preprocessor=PREPROCESSOR_3D)


def dense_pool(pool, in_size, channels) -> torch.Tensor:
    """``[Lo, L]``: pooled position ``o`` covers ``o*s - p + [0, k)`` per
    axis inside the grid, weight 1 / (number covered); the output grid is
    the module's own output on a zero input."""
    k = [pool.kernel_size] * 3 if isinstance(pool.kernel_size, int) \
        else list(pool.kernel_size)
    s = [pool.stride] * 3 if isinstance(pool.stride, int) \
        else list(pool.stride)
    p = [pool.padding] * 3 if isinstance(pool.padding, int) \
        else list(pool.padding)
    t, h, w = in_size
    with torch.no_grad():
        out = pool(torch.zeros(1, channels, t, h, w)).shape[2:]
    m = torch.zeros(out[0] * out[1] * out[2], t * h * w)
    for a in range(out[0]):
        for b in range(out[1]):
            for c in range(out[2]):
                lo = [o * s[i] - p[i] for i, o in enumerate((a, b, c))]
                cells = [(x, y, z)
                         for x in range(lo[0], lo[0] + k[0])
                         for y in range(lo[1], lo[1] + k[1])
                         for z in range(lo[2], lo[2] + k[2])
                         if 0 <= x < t and 0 <= y < h and 0 <= z < w]
                row = a * out[1] * out[2] + b * out[2] + c
                for x, y, z in cells:
                    m[row, x * h * w + y * w + z] = 1.0 / len(cells)
    return m


def with_cls(m: torch.Tensor, cls: int, pass_cls: bool = True) -> torch.Tensor:
    if not cls:
        return m
    out = torch.zeros(m.shape[0] + 1, m.shape[1] + 1)
    out[1:, 1:] = m
    out[0, 0] = 1.0 if pass_cls else 0.0
    return out


def block_terms(model, in_sizes, cls):
    """Per block: (S + [res] P_q, P_kv) as dense matrices with cls."""
    terms = []
    for blk, size in zip(model.backbone.blocks, in_sizes):
        attn = blk.attn
        ch = attn.pool_q.in_channels
        n = size[0] * size[1] * size[2]
        skip = dense_pool(blk.pool_skip, size, ch) \
            if blk.pool_skip is not None else torch.eye(n)
        ident = with_cls(skip, cls)
        if attn.residual_pooling:
            ident = ident + with_cls(dense_pool(attn.pool_q, size, ch), cls,
                                     pass_cls=False)
        terms.append((ident, with_cls(dense_pool(attn.pool_k, size, ch),
                                      cls)))
    return terms


@pytest.mark.parametrize('cls,residual', [(True, True), (False, False)])
def test_mvit_rollout_and_relevance_match_dense_products(cls, residual):
    model = build(mvit_cfg(cls, residual))
    x = torch.randn(1, 1, 3, 8, 32, 32,
                    generator=torch.Generator().manual_seed(3))
    ad = build_adapter(model)
    with torch.no_grad():
        plain = ad.scores(x)
    sizes = []
    handles = [b.register_forward_pre_hook(
        lambda m, a: sizes.append(tuple(a[1]))) for b in model.backbone.blocks]
    try:
        with record_attention(model.backbone) as calls, torch.enable_grad():
            scores = ad.scores(x)
            probs = [c.probs for c in calls]
            grads = torch.autograd.grad(scores[0, 4], probs)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(scores.detach(), plain, rtol=1e-5, atol=1e-6)
    assert [c.kind for c in calls] == ['pooled'] * 3
    assert sizes[0] == (4, 8, 8) and sizes[1] == (4, 8, 8)
    assert sizes[2] == (4, 4, 4)
    terms = block_terms(model, sizes, int(cls))
    n0 = int(cls) + 4 * 8 * 8
    last = calls[-1].probs.shape[-2] - int(cls)
    start = torch.zeros(int(cls) + last)
    if cls:
        start[0] = 1.0
    else:
        start[:] = 1.0 / last
    snap = ModelSnapshot(model)

    c = torch.eye(n0)
    for (ident, pkv), p in zip(terms, probs):
        o = ident + p.detach().mean(1)[0] @ pkv
        c = (o / o.sum(-1, keepdim=True)) @ c
    expected = (start @ c)[int(cls):]
    exp = build_explainer('attention_rollout', model).attribute(x, target=4)
    tok = exp.extras['token_map']
    assert tok.shape == (1, 1, 4, 8, 8)
    torch.testing.assert_close(tok.reshape(-1), expected, rtol=1e-4,
                               atol=1e-7)

    r, only_ident = torch.eye(n0), torch.eye(n0)
    for (ident, pkv), p, g in zip(terms, probs, grads):
        abar = F.relu(g * p.detach()).mean(1)[0]
        r = ident @ r + abar @ pkv @ r
        only_ident = ident @ only_ident
    expected = (start @ (r if cls else r - only_ident))[int(cls):]
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=4)
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1), expected,
                               rtol=1e-4, atol=1e-8)
    assert expected.abs().max() > 0
    assert not snap.changes()


def test_pool_rows_by_hand():
    """1-D pooling, 5 tokens, kernel 3, stride 2, padding 1: pooled tokens
    cover {0, 1}, {1, 2, 3}, {3, 4}. The row (1, 0, 0) -> (1/2, 1/2, 0, 0,
    0); (0, 1, 0) -> (0, 1/3, 1/3, 1/3, 0); (0, 0, 1) -> (0, 0, 0, 1/2,
    1/2)."""
    pool = torch.nn.MaxPool3d((1, 1, 3), (1, 1, 2), (0, 0, 1))
    g = pool_geometry(pool, (1, 1, 5))
    assert g['out_size'] == (1, 1, 3)
    rows = pool_rows(torch.eye(3).view(3, 1, 1, 3), g).view(3, 5)
    expected = torch.tensor([[1 / 2, 1 / 2, 0, 0, 0],
                             [0, 1 / 3, 1 / 3, 1 / 3, 0],
                             [0, 0, 0, 1 / 2, 1 / 2]])
    torch.testing.assert_close(rows, expected)


def test_mvit_views_are_independent():
    """Rollout: each view as if alone. Relevance (gradient of the clip
    score, the mean over views): a view's map does not change when the
    other view changes."""
    model = build(mvit_cfg(True, True))
    x = torch.randn(1, 2, 3, 8, 32, 32,
                    generator=torch.Generator().manual_seed(5))
    other = x.clone()
    other[:, 1] = torch.flip(x[:, 1], dims=(-1,))
    for method in ('attention_rollout', 'attention_relevance'):
        exp = build_explainer(method, model).attribute(x, target=0)
        alt = build_explainer(method, model).attribute(other, target=0)
        torch.testing.assert_close(exp.extras['token_map'][0, 0],
                                   alt.extras['token_map'][0, 0],
                                   rtol=1e-4, atol=1e-8)
        if method == 'attention_rollout':
            for v in range(2):
                one = build_explainer(method, model).attribute(
                    x[:, v:v + 1], target=0)
                torch.testing.assert_close(exp.extras['token_map'][0, v],
                                           one.extras['token_map'][0, 0],
                                           rtol=1e-4, atol=1e-8)
