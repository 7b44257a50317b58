"""LeGrad on hierarchical transformers (Video Swin, MViT, UniFormer), with
the model's final score for every block, against an independent
computation here: autograd of the score w.r.t. the recorded attention;
Swin's windows laid out on the token grid by explicit index arithmetic
(window origin, cyclic shift, padding, shifted-window regions, 2x2 patch
merging), UniFormer's stages by their patch-embedding strides."""
import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.testing.coverage import ModelSnapshot, family_row
from mmxai.testing.toolbox_configs import build_small, representative_configs
from tests.test_explainers.test_attention_mvit import mvit_cfg
from tests.test_explainers.test_attention_swin import clip, swin_cfg
from tests.tiny_models import build

_MODELS = {}


def model(name):
    if name not in _MODELS:
        _MODELS[name] = build(swin_cfg() if name == 'swin' else
                              mvit_cfg(cls=name == 'mvit_cls',
                                       residual=True))
    return _MODELS[name]


def recorded_grads(m, x, target):
    """Per recorded call: kind, meta and ``dS_target / dA`` (per head)."""
    adapter = build_adapter(m)
    with record_attention(m.backbone, structural=True) as calls, \
            torch.enable_grad():
        scores, _ = adapter.scores_and_probs(x)
        attn = [c for c in calls if c.probs is not None]
        grads = torch.autograd.grad(scores[:, target].sum(),
                                    [c.probs for c in attn],
                                    allow_unused=True)
    g = {id(c): gi for c, gi in zip(attn, grads)}
    return [(c.kind, c.meta, g.get(id(c))) for c in calls]


def region(z: int, padded: int, window: int, shift: int) -> int:
    """Shifted-window region of padded (shifted-frame) coordinate ``z``
    along one axis, as MMAction2's mask slices it."""
    if shift == 0:
        return 0
    return 0 if z < padded - window else 1 if z < padded - shift else 2


def swin_block_map(g: torch.Tensor, meta: dict) -> torch.Tensor:
    """``[B, D, H, W]``: per real key token, mean over heads and over the
    real queries of its window in its region of ``ReLU(g)``."""
    b = meta['batch']
    d, h, w = meta['grid']
    win, sh, pad = meta['window'], meta['shift'], meta['padded']
    nwin = [p // k for p, k in zip(pad, win)]
    n = win[0] * win[1] * win[2]
    r = F.relu(g).mean(1).view(b, -1, n, n)
    out = torch.zeros(b, d, h, w)
    k = 0
    for i0 in range(nwin[0]):
        for j0 in range(nwin[1]):
            for l0 in range(nwin[2]):
                pos, reg, real = [], [], []
                for a in range(win[0]):
                    for bb in range(win[1]):
                        for c in range(win[2]):
                            z = (i0 * win[0] + a, j0 * win[1] + bb,
                                 l0 * win[2] + c)
                            reg.append(tuple(region(z[i], pad[i], win[i],
                                                    sh[i])
                                             for i in range(3)))
                            o = tuple((z[i] + sh[i]) % pad[i]
                                      for i in range(3))
                            pos.append(o)
                            real.append(o[0] < d and o[1] < h and o[2] < w)
                for key in range(n):
                    if not real[key]:
                        continue
                    qs = [q for q in range(n)
                          if real[q] and reg[q] == reg[key]]
                    od, oh, ow = pos[key]
                    out[:, od, oh, ow] = r[:, k, qs, key].sum(1) / len(qs)
                k += 1
    return out


def swin_expected(m, x, target, start=0):
    """Mean over blocks ``start..`` of each block's map read on the first
    stage's grid: after ``s`` patch mergings, token ``(d, i, j)`` of stage
    0 lies under merged token ``(d, i // 2**s, j // 2**s)``."""
    blocks, merges = [], 0
    for kind, meta, g in recorded_grads(m, x, target):
        if kind == 'merge':
            merges += 1
        else:
            blocks.append((meta, g, 2 ** merges))
    _, h0, w0 = blocks[0][0]['grid']
    used = blocks[start:]
    total = 0
    for meta, g, f in used:
        e = swin_block_map(g, meta)
        idx_h, idx_w = torch.arange(h0) // f, torch.arange(w0) // f
        total = total + e[:, :, idx_h][:, :, :, idx_w]
    return total / len(used)


def test_swin_legrad_matches_index_arithmetic():
    m = model('swin')
    x = clip(40)  # 10x10 tokens: padding to the 3x3 windows, odd merges
    snap = ModelSnapshot(m)
    exp = build_explainer('legrad', m).attribute(x, target=2)
    expected = swin_expected(m, x, 2)
    tok = exp.extras['token_map'][:, 0]
    assert tok.shape == expected.shape == (1, 4, 10, 10)
    torch.testing.assert_close(tok, expected, rtol=1e-4, atol=1e-9)
    assert expected.min() >= 0 and expected.max() > 0
    assert exp.maps.shape == (1, 1, 8, 40, 40)
    # start_layer keeps its meaning: the last two blocks only
    late = build_explainer('legrad', m, start_layer=-2).attribute(x,
                                                                  target=2)
    torch.testing.assert_close(late.extras['token_map'][:, 0],
                               swin_expected(m, x, 2, start=4),
                               rtol=1e-4, atol=1e-9)
    assert not snap.changes()


@pytest.mark.parametrize('name', ['mvit_cls', 'mvit'])
def test_mvit_legrad_matches_autograd(name):
    m = model(name)
    x = clip(32, seed=3)
    snap = ModelSnapshot(m)
    exp = build_explainer('legrad', m).attribute(x, target=1)
    rec = [(meta, g) for kind, meta, g in recorded_grads(m, x, 1)
           if kind == 'pooled']
    base = rec[0][0]['in_size']
    total = 0
    for meta, g in rec:
        cls = int(name == 'mvit_cls')
        keys = F.relu(g).mean(1).mean(1)[:, cls:]
        kv = meta['kv']['out_size']
        total = total + F.interpolate(keys.view(-1, 1, *kv), size=base,
                                      mode='trilinear',
                                      align_corners=False)[:, 0]
    expected = total / len(rec)
    torch.testing.assert_close(exp.extras['token_map'][:, 0], expected,
                               rtol=1e-4, atol=1e-9)
    assert expected.max() > 0
    assert not snap.changes()


@pytest.mark.parametrize('name', ['swin', 'mvit'])
def test_views_and_batch_are_independent(name):
    """The score is the clip score (mean over views): each sample's map
    is the one computed alone; changing one view leaves the other samples
    unchanged."""
    m = model(name)
    size = 32
    x = torch.cat([clip(size, seed=s) for s in (1, 2, 3, 4)], 1).view(
        2, 2, 3, 8, size, size)
    exp = build_explainer('legrad', m).attribute(x, target=1)
    for b in range(2):
        one = build_explainer('legrad', m).attribute(x[b:b + 1], target=1)
        torch.testing.assert_close(exp.extras['token_map'][b],
                                   one.extras['token_map'][0], rtol=1e-4,
                                   atol=1e-9)
    other = x.clone()
    other[1, 1] = torch.flip(x[1, 1], dims=(-1,))
    alt = build_explainer('legrad', m).attribute(other, target=1)
    torch.testing.assert_close(exp.extras['token_map'][0],
                               alt.extras['token_map'][0], rtol=1e-4,
                               atol=1e-9)
    assert not torch.allclose(exp.extras['token_map'][1],
                              alt.extras['token_map'][1])


@pytest.mark.parametrize('family', ['swin', 'mvit', 'uniformer',
                                    'uniformerv2'])
def test_coverage_cell_works(family):
    row = family_row(representative_configs()[family], ['legrad'], size=32)
    cell = row['cells']['legrad']
    assert cell.status == 'works', cell


def test_uniformer_legrad_matches_autograd():
    """UniFormer (v1): ``E_l`` on each global-attention block's stage grid
    (the output of the stage's patch embedding, read by a hook here),
    copied back to ``patch_embed1``'s grid through the strided patch
    embeddings by index arithmetic (token ``n`` under ``n // stride``)."""
    sm = build_small(representative_configs()['uniformer'], size=32)
    m, x = sm.model, sm.inputs
    bb = m.backbone
    sizes, strides = {}, {}
    handles = []
    for i in range(1, 5):
        proj = getattr(bb, f'patch_embed{i}').proj
        assert tuple(proj.kernel_size) == tuple(proj.stride) or i == 1
        strides[i] = tuple(proj.stride)
        handles.append(proj.register_forward_hook(
            lambda mod, a, out, i=i: sizes.setdefault(
                i, tuple(out.shape[2:])) and None))
    stage_of = [i for i in range(1, 5) for blk in getattr(bb, f'blocks{i}')
                if type(blk).__name__ == 'SABlock']
    try:
        rec = recorded_grads(m, x, 3)
    finally:
        for h in handles:
            h.remove()
    full = [g for kind, _, g in rec if kind == 'full']
    assert len(full) == len(stage_of) > 0
    t0, h0, w0 = sizes[1]
    total = 0
    for g, i in zip(full, stage_of):
        e = F.relu(g).mean(1).mean(1).reshape(-1, *sizes[i])
        f = [1, 1, 1]
        for j in range(2, i + 1):
            f = [a * s for a, s in zip(f, strides[j])]
        it, ih, iw = (torch.arange(n) // k for n, k in zip((t0, h0, w0), f))
        total = total + e[:, it][:, :, ih][:, :, :, iw]
    expected = total / len(full)
    snap = ModelSnapshot(m)
    exp = build_explainer('legrad', m).attribute(x, target=3)
    torch.testing.assert_close(exp.extras['token_map'][:, 0], expected,
                               rtol=1e-4, atol=1e-9)
    assert expected.max() > 0 and sizes[4] != sizes[1]
    assert not snap.changes()


def test_uniformerv2_legrad_matches_autograd():
    """UniFormerV2: the CLIP blocks' per-frame attention (frames of a clip
    consecutive, cls first), decoders not used; one grid, no resampling."""
    from tests.test_explainers.test_attention_uniformerv2 import (
        PATCH, SIZE, T, uniformerv2)
    m = uniformerv2(no_lmhra=False)
    x = torch.randn(2, 1, 3, T, SIZE, SIZE,
                    generator=torch.Generator().manual_seed(5))
    side = SIZE // PATCH
    rec = [g for kind, _, g in recorded_grads(m, x, 4) if kind == 'full']
    assert len(rec) == len(m.backbone.transformer.resblocks)
    expected = torch.zeros(2, T, side, side)
    for g in rec[1:]:
        e = F.relu(g).mean(1).mean(1)  # [2*T, 1 + side*side]
        for n in range(2):
            for t in range(T):
                for i in range(side):
                    for j in range(side):
                        expected[n, t, i, j] += e[n * T + t, 1 + i * side + j]
    expected /= len(rec) - 1
    snap = ModelSnapshot(m)
    exp = build_explainer('legrad', m, start_layer=1).attribute(x, target=4)
    torch.testing.assert_close(exp.extras['token_map'][:, 0], expected,
                               rtol=1e-4, atol=1e-9)
    assert expected.max() > 0 and exp.maps.shape == (2, 1, T, SIZE, SIZE)
    assert not snap.changes()


def test_staa_still_refuses_local_attention_and_cnns_are_refused():
    """STAA shares the family check: it still has no windowed layout."""
    from mmxai.errors import UnsupportedModelError
    with pytest.raises(UnsupportedModelError, match='windows, pooled'):
        build_explainer('staa', model('swin'))
    cnn = build_small(representative_configs()['i3d'], size=32).model
    with pytest.raises(UnsupportedModelError, match='has none: use gradcam'):
        build_explainer('legrad', cnn)


def test_swin_view_chunks_give_the_same_map():
    """``test_cfg.max_testing_views`` runs the backbone on chunks of views:
    each forward's calls are laid out on their own and joined in order."""
    m = model('swin')
    x = torch.cat([clip(32, seed=s) for s in (1, 2, 3)], 1)
    plain = build_explainer('legrad', m).attribute(x, target=0)
    saved = m.test_cfg
    m.test_cfg = dict(max_testing_views=2)
    try:
        chunked = build_explainer('legrad', m).attribute(x, target=0)
    finally:
        m.test_cfg = saved
    torch.testing.assert_close(chunked.extras['token_map'],
                               plain.extras['token_map'], rtol=1e-4,
                               atol=1e-9)
    torch.testing.assert_close(chunked.scores, plain.scores, rtol=1e-5,
                               atol=1e-6)
