"""Attention rollout / relevance on Video Swin (shifted windows, padding,
patch merging): the factorised operators against dense ``N x N`` matrices
built here independently from the recorded per-window attention (token
coordinates by modular arithmetic), and a rollout worked by hand."""
import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.errors import UnsupportedModelError
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.explainers.attention_windows import window_cols, window_rows
from mmxai.testing.coverage import ModelSnapshot
from tests.tiny_models import PREPROCESSOR_3D, build

EMBED = 8


def swin_cfg(window=(2, 3, 3)) -> dict:
    return dict(
        type='Recognizer3D',
        backbone=dict(type='SwinTransformer3D', pretrained=None,
                      arch=dict(embed_dims=EMBED, depths=[2, 2, 2],
                                num_heads=[1, 2, 2]),
                      patch_size=(2, 4, 4), window_size=window,
                      drop_path_rate=0.0, out_indices=(2,)),
        cls_head=dict(type='I3DHead', num_classes=5, in_channels=EMBED * 4,
                      spatial_type='avg', dropout_ratio=0.0,
                      average_clips='prob'),
        data_preprocessor=PREPROCESSOR_3D)


_MODEL = {}


def tiny_swin():
    if 'm' not in _MODEL:
        _MODEL['m'] = build(swin_cfg())
    return _MODEL['m']


def clip(size: int, frames: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, 3, frames, size, size, generator=g)


# ------------------------------------------------- dense reference operators
def dense_window(a: torch.Tensor, meta: dict) -> torch.Tensor:
    """``[N, N]`` over the real tokens ``(d h w)`` of one batch element from
    per-window ``a [nW, n, n]``: window ``k`` holds, at in-window offset
    ``o``, the token at ``(window origin + o + shift) mod padded`` of the
    block's input (the block rolls by ``-shift`` before partitioning);
    positions outside the real grid are padding and dropped."""
    d, h, w = meta['grid']
    wd, wh, ww = meta['window']
    sd, sh, sw = meta['shift']
    pd, ph, pw = meta['padded']
    n_tok = d * h * w
    out = torch.zeros(n_tok, n_tok, dtype=a.dtype)
    k = 0
    for i0 in range(pd // wd):
        for j0 in range(ph // wh):
            for l0 in range(pw // ww):
                idx = []
                for a0 in range(wd):
                    for b0 in range(wh):
                        for c0 in range(ww):
                            z = ((i0 * wd + a0 + sd) % pd,
                                 (j0 * wh + b0 + sh) % ph,
                                 (l0 * ww + c0 + sw) % pw)
                            real = z[0] < d and z[1] < h and z[2] < w
                            idx.append(z[0] * h * w + z[1] * w + z[2]
                                       if real else -1)
                for i, ti in enumerate(idx):
                    for j, tj in enumerate(idx):
                        if ti >= 0 and tj >= 0:
                            out[ti, tj] = a[k, i, j]
                k += 1
    assert k == a.shape[0]
    return out


def dense_merge(meta: dict) -> torch.Tensor:
    """``M [N_{s+1}, N_s]``: merged token ``(d, i, j)`` covers ``(d, 2i+a,
    2j+b)`` inside the grid, each with weight 1 / (number covered)."""
    d, h, w = meta['grid']
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    m = torch.zeros(d * h2 * w2, d * h * w)
    for dd in range(d):
        for i in range(h2):
            for j in range(w2):
                kids = [(2 * i + a, 2 * j + b) for a in (0, 1) for b in (0, 1)
                        if 2 * i + a < h and 2 * j + b < w]
                for y, x in kids:
                    m[dd * h2 * w2 + i * w2 + j, dd * h * w + y * w + x] = \
                        1.0 / len(kids)
    return m


def dense_ops(calls, weights):
    ops = []
    for c, wgt in zip(calls, weights):
        if c.kind == 'merge':
            ops.append(('merge', dense_merge(c.meta)))
        else:
            assert c.meta['batch'] == 1
            ops.append(('window', dense_window(wgt, c.meta)))
    return ops


def record(model, x, target):
    ad = build_adapter(model)
    with torch.no_grad():
        plain = ad.scores(x)
    with record_attention(model.backbone, structural=True) as calls, \
            torch.enable_grad():
        scores = ad.scores(x)
        attn = [c.probs for c in calls if c.probs is not None]
        grads = iter(torch.autograd.grad(scores[0, target], attn))
    torch.testing.assert_close(scores.detach(), plain, rtol=1e-5, atol=1e-6)
    grads = [None if c.probs is None else next(grads) for c in calls]
    return calls, grads


@pytest.mark.parametrize('size', [32, 36])
def test_swin_rollout_and_relevance_match_dense_products(size):
    """32 px: 4x8x8 tokens, windows 2x3x3 with shift 1x1x1 and padding to
    9 (stage 2: 4x4x4 padded to 6; stage 3: window clipped to 2x2x2, no
    spatial shift); 36 px: 9x9 (no padding) merged to 5x5 (odd: padded
    merge) then 3x3."""
    model, x = tiny_swin(), clip(size)
    calls, grads = record(model, x, target=2)
    kinds = [c.kind for c in calls]
    assert kinds == ['window'] * 2 + ['merge'] + ['window'] * 2 + \
        ['merge'] + ['window'] * 2
    metas = [c.meta for c in calls if c.kind == 'window']
    assert metas[1]['shift'] == (1, 1, 1) and metas[0]['shift'] == (0, 0, 0)
    if size == 32:
        assert metas[1]['padded'] == (4, 9, 9)
    assert metas[-1]['window'] == (2, size // 16, size // 16) or \
        metas[-1]['window'][1] <= 3
    n0 = 4 * (size // 4) ** 2
    snap = ModelSnapshot(model)

    # rollout: C = prod rownorm(O + I), merges M; map = mean row of C
    ops = dense_ops(calls, [None if c.probs is None else
                            c.probs.detach().mean(1) for c in calls])
    c = None
    for kind, o in ops:
        if kind == 'window':
            o = o + torch.eye(o.shape[0])
            o = o / o.sum(-1, keepdim=True)
        c = o if c is None else o @ c
    expected = c.mean(0)
    exp = build_explainer('attention_rollout', model).attribute(x, target=2)
    tok = exp.extras['token_map']
    assert tok.shape == (1, 1, 4, size // 4, size // 4)
    torch.testing.assert_close(tok.reshape(-1), expected, rtol=1e-4,
                               atol=1e-7)
    # conservation: every factor is row-stochastic on the real tokens
    torch.testing.assert_close(tok.sum(), torch.tensor(1.0), rtol=1e-4,
                               atol=0)
    assert exp.maps.shape == (1, 1, 8, size, size)

    # Chefer: R = I; R <- R + mean_h ReLU(grad * A) R; merges R <- M R;
    # map = mean row of R minus that of the identity path (merges only)
    ops = dense_ops(calls, [None if c.probs is None else
                            F.relu(g * c.probs.detach()).mean(1)[:]
                            for c, g in zip(calls, grads)])
    r, ident = torch.eye(n0), torch.eye(n0)
    for kind, o in ops:
        if kind == 'window':
            r = r + o @ r
        else:
            r, ident = o @ r, o @ ident
    expected = (r - ident).mean(0)
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=2)
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1), expected,
                               rtol=1e-4, atol=1e-8)
    assert expected.abs().max() > 0
    assert not snap.changes()


def test_swin_shifted_window_rollout_by_hand():
    """1 frame, 4x4 tokens, windows 1x2x2. Block 1 (no shift): uniform
    attention in each 2x2 window. Block 2 (shift 0x1x1): uniform under
    MMAction2's own shift mask. Rolling by -1 puts rows/cols {1, 2} in one
    window and {3, 0} in the wrapped one, which the mask splits into {3}
    and {0}: block 2 mixes groups {0}, {1,2}, {3} per axis.

    Row of token (1, 1), rownorm(A + I) = (A + I) / 2 (A row-stochastic):
    block 2: 5/8 at (1,1), 1/8 at (1,2), (2,1), (2,2); block 1 sends each
    of those 5/8 to itself and 1/8 to the other three of its 2x2 window:
    (1,1): 25/64; (0,0), (0,1), (1,0), (1,2), (2,1), (2,2): 5/64; the
    other nine tokens 1/64."""
    from mmaction.models.backbones.swin import compute_mask
    meta1 = dict(batch=1, grid=(1, 4, 4), window=(1, 2, 2), shift=(0, 0, 0),
                 padded=(1, 4, 4))
    meta2 = dict(meta1, shift=(0, 1, 1))
    a1 = torch.full((4, 4, 4), 0.25)
    a2 = torch.softmax(compute_mask(1, 4, 4, (1, 2, 2), (0, 1, 1), 'cpu'),
                       -1)
    # block 2 alone, every row: uniform over the token's group product
    groups = {0: [0], 1: [1, 2], 2: [1, 2], 3: [3]}
    eye = torch.eye(16).view(16, 1, 1, 4, 4)
    rows = torch.stack([window_rows(e, a2, meta2) for e in eye]).view(16, 16)
    hand = torch.zeros(16, 16)
    for i in range(4):
        for j in range(4):
            cells = [y * 4 + x for y in groups[i] for x in groups[j]]
            hand[i * 4 + j, cells] = 1.0 / len(cells)
    torch.testing.assert_close(rows, hand, atol=1e-6, rtol=0)

    def rollout(r, a, meta):
        scaled = r / (window_cols(torch.ones_like(r), a, meta) + 1)
        return window_rows(scaled, a, meta) + scaled
    r = torch.zeros(1, 1, 4, 4)
    r[0, 0, 1, 1] = 1.0
    r = rollout(rollout(r, a2, meta2), a1, meta1)
    expected = torch.tensor([[5., 5., 1., 1.],
                             [5., 25., 5., 1.],
                             [1., 5., 5., 1.],
                             [1., 1., 1., 1.]]) / 64
    torch.testing.assert_close(r[0, 0], expected, atol=1e-6, rtol=0)


def test_swin_needs_last_stage_output():
    cfg = swin_cfg()
    cfg['backbone']['out_indices'] = (1,)
    cfg['cls_head']['in_channels'] = EMBED * 2
    with pytest.raises(UnsupportedModelError, match='out_indices'):
        build_explainer('attention_rollout', build(cfg))


@pytest.mark.parametrize('method', ['attention_rollout',
                                    'attention_relevance'])
def test_swin_views_and_batch_are_independent(method):
    """Two samples x two views in one call. Rollout: each view's token map
    equals that view explained alone. Relevance weights by the gradient of
    the clip score (the mean over views, and ``R`` is not homogeneous in
    it): a view's map does not change when the other views change."""
    model = tiny_swin()
    x = torch.cat([clip(32, seed=s) for s in (1, 2, 3, 4)], 1).view(
        2, 2, 3, 8, 32, 32)
    exp = build_explainer(method, model).attribute(x, target=1)
    other = x.clone()
    other[:, 1] = torch.flip(x[:, 1], dims=(-1,))
    alt = build_explainer(method, model).attribute(other, target=1)
    torch.testing.assert_close(exp.extras['token_map'][:, 0],
                               alt.extras['token_map'][:, 0],
                               rtol=1e-4, atol=1e-8)
    assert not torch.allclose(exp.extras['token_map'][:, 1],
                              alt.extras['token_map'][:, 1])
    if method == 'attention_rollout':
        for b in range(2):
            for v in range(2):
                one = build_explainer(method, model).attribute(
                    x[b:b + 1, v:v + 1], target=1)
                torch.testing.assert_close(exp.extras['token_map'][b, v],
                                           one.extras['token_map'][0, 0],
                                           rtol=1e-4, atol=1e-8)
