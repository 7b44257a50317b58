"""Attention rollout / relevance on UniFormerV2 (per-frame CLIP blocks with
local temporal MHRA, the global query decoder with its dpe convs, the
head's mix of the query and the frames' cls tokens), against dense
matrices over all tokens of all frames plus the query, built here."""
import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.testing.coverage import ModelSnapshot
from tests.test_explainers.test_attention_mvit import dense_pool
from tests.tiny_models import PREPROCESSOR_3D, build

T, SIZE, PATCH, WIDTH = 4, 32, 16, 32


def uniformerv2(no_lmhra: bool):
    cfg = dict(
        type='Recognizer3D',
        backbone=dict(type='UniFormerV2', input_resolution=SIZE,
                      patch_size=PATCH, width=WIDTH, layers=3, heads=2,
                      t_size=T, dw_reduction=1.5, temporal_downsample=False,
                      no_lmhra=no_lmhra, double_lmhra=True,
                      return_list=[1, 2], n_layers=2, n_dim=WIDTH, n_head=2,
                      mlp_dropout=[0.0, 0.0], clip_pretrained=False,
                      pretrained=None),
        cls_head=dict(type='UniFormerHead', num_classes=5,
                      in_channels=WIDTH, dropout_ratio=0.0,
                      average_clips='prob'),
        data_preprocessor=PREPROCESSOR_3D)
    model = build(cfg)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():  # zero-initialised branches (lmhra, decoder)
        for p in model.parameters():
            if not p.detach().any():
                p.normal_(0, 0.2, generator=g)
    return model


@pytest.mark.parametrize('no_lmhra', [False, True])
def test_uniformerv2_matches_dense_products(no_lmhra):
    model = uniformerv2(no_lmhra)
    x = torch.randn(1, 1, 3, T, SIZE, SIZE,
                    generator=torch.Generator().manual_seed(2))
    ad = build_adapter(model)
    with torch.no_grad():
        plain = ad.scores(x)
    with record_attention(model.backbone, structural=True) as calls, \
            torch.enable_grad():
        scores = ad.scores(x)
        attn = [c for c in calls if c.probs is not None]
        grads = dict(zip(map(id, attn), torch.autograd.grad(
            scores[0, 2], [c.probs for c in attn])))
    torch.testing.assert_close(scores.detach(), plain, rtol=1e-5, atol=1e-6)
    snap = ModelSnapshot(model)
    tr = model.backbone.transformer
    hw = (SIZE // PATCH) ** 2
    length = 1 + hw
    n = T * length + 1  # every token of every frame, then the query
    qi = n - 1
    patch = [t * length + 1 + i for t in range(T) for i in range(hw)]
    size = (T, SIZE // PATCH, SIZE // PATCH)
    full = iter([c for c in calls if c.kind == 'full'])
    dec = iter([c for c in calls if c.kind == 'decoder'])

    def on_patches(conv, rule):
        b = dense_pool(conv, size, conv.in_channels)
        o = torch.eye(n)
        idx = torch.tensor(patch)
        o[idx[:, None], idx[None, :]] = rule(b)
        return o

    def operators(residual):
        """Dense operators in forward order, from the model's structure."""
        ops = []
        roll = residual == 'rollout'

        def local(conv):
            return on_patches(conv, lambda b: (torch.eye(hw * T) + b) / 2
                              if roll else torch.eye(hw * T))
        for i, blk in enumerate(tr.resblocks):
            if not blk.no_lmhra:
                ops.append(local(blk.lmhra1.pos_embed[2]))
            c = next(full)
            a = c.probs.detach().mean(1) if roll else \
                F.relu(grads[id(c)] * c.probs.detach()).mean(1)
            o = torch.eye(n)
            for t in range(T):
                s = slice(t * length, (t + 1) * length)
                if roll:
                    m = a[t] + torch.eye(length)
                    o[s, s] = m / m.sum(-1, keepdim=True)
                else:
                    o[s, s] = torch.eye(length) + a[t]
            ops.append(o)
            if not blk.no_lmhra and blk.double_lmhra:
                ops.append(local(blk.lmhra2.pos_embed[2]))
            if i in tr.return_list:
                j = tr.return_list.index(i)
                d = local(tr.dpe[j])
                c = next(dec)
                a = c.probs.detach().mean(1) if roll else \
                    F.relu(grads[id(c)] * c.probs.detach()).mean(1)
                row = a.reshape(-1) @ d[:qi, :qi]
                o = torch.eye(n)
                if roll:
                    o[qi, :qi], o[qi, qi] = row / 2, 0.5
                else:
                    o[qi, :qi] = row
                ops.append(o)
        return ops

    mix = torch.sigmoid(tr.balance.detach()).mean()
    start = torch.zeros(n)
    start[qi] = 1 - mix
    start[[t * length for t in range(T)]] = mix / T
    for method, residual in (('attention_rollout', 'rollout'),
                             ('attention_relevance', 'relevance')):
        full = iter([c for c in calls if c.kind == 'full'])
        dec = iter([c for c in calls if c.kind == 'decoder'])
        c = torch.eye(n)
        for o in operators(residual):
            c = o @ c
        expected = (start @ c)[patch].view(1, 1, *size)
        exp = build_explainer(method, model).attribute(x, target=2)
        torch.testing.assert_close(exp.extras['token_map'], expected,
                                   rtol=1e-4, atol=1e-8)
        assert expected.abs().max() > 0
        assert exp.maps.shape == (1, 1, T, SIZE, SIZE)
    kinds = [c.kind for c in calls]
    assert kinds.count('decoder') == 2 and kinds.count('dpe') == 2
    assert kinds.count('local_t') == (0 if no_lmhra else 6)
    assert not snap.changes()
