"""STAA against a hand computation from the recorded attention (explicit
token indices), a planted ViT whose attention is known in closed form from
its weights, the post-processing options, and the model left as found."""
import math

import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.errors import MMXAIError, UnsupportedModelError
from mmxai.explainers import STAA, build_explainer, method_name
from mmxai.explainers.attention import record_attention
from mmxai.testing.coverage import ModelSnapshot
from mmxai.testing.toolbox_configs import (build_small,
                                           load_recognition_config,
                                           representative_configs)

REPS = representative_configs()
_CACHE = {}


def small(name):
    if name not in _CACHE:
        if name.startswith('timesformer'):
            path = REPS['timesformer'].replace('divST', name.split(':')[1])
            _CACHE[name] = build_small(path, size=32)
        else:
            _CACHE[name] = build_small(REPS[name], size=32)
    return _CACHE[name]


def hand_staa(model, x):
    """``[t, h, w]`` STAA of one sample / view from the last block's
    recorded attention, by explicit indices."""
    bb = model.backbone
    ad = build_adapter(model)
    with record_attention(bb) as calls, torch.no_grad():
        ad.scores(x)
        recorded = [(c.kind, c.probs.mean(1)) for c in calls]  # heads
    if type(bb).__name__ != 'TimeSformer':  # VideoMAE, mean-pooled head
        t, h, w = ad.token_grid(x)
        a = recorded[-1][1][0]  # [N, N]
        s = torch.zeros(t, h, w)
        for tt in range(t):
            for i in range(h):
                for j in range(w):
                    s[tt, i, j] = a[:, (tt * h + i) * w + j].mean()
        return s / s.sum()
    t = bb.num_frames
    h, w = ad.patch_grid(x)
    s, tau = torch.zeros(t, h, w), torch.zeros(t)
    if bb.attention_type == 'divided_space_time':
        (k1, temporal), (k2, spatial) = recorded[-2:]
        assert (k1, k2) == ('temporal', 'spatial')
        for tt in range(t):
            for i in range(h):
                for j in range(w):
                    s[tt, i, j] = spatial[tt, 0, 1 + i * w + j]
            tau[tt] = temporal[:, :, tt].mean()  # over patches, queries
        s = s / s.sum(dim=(1, 2), keepdim=True)
        return s * (tau / tau.sum()).view(t, 1, 1)
    a = recorded[-1][1]
    for tt in range(t):
        for i in range(h):
            for j in range(w):
                p = i * w + j
                s[tt, i, j] = a[tt, 0, 1 + p] if bb.attention_type == \
                    'space_only' else a[0, 0, 1 + p * t + tt]
    return s / s.sum()


@pytest.mark.parametrize('name', ['timesformer:divST', 'timesformer:jointST',
                                  'timesformer:spaceOnly', 'videomae'])
def test_staa_equals_hand_computation(name):
    sm = small(name)
    model, x = sm.model, sm.inputs
    snap = ModelSnapshot(model)
    exp = build_explainer('staa', model).attribute(x, target=1)
    assert not snap.changes()
    expected = hand_staa(model, x)
    torch.testing.assert_close(exp.extras['token_map'][0, 0], expected,
                               rtol=1e-5, atol=1e-7)
    t = expected.shape[0]
    torch.testing.assert_close(exp.extras['temporal'].sum(-1),
                               torch.ones(1, 1))
    torch.testing.assert_close(exp.extras['spatial'].sum(dim=(3, 4)),
                               torch.ones(1, 1, t))
    assert exp.maps.shape == (1, 1) + tuple(x.shape[3:])
    # one forward pass, no gradients: the scores are predict's
    with torch.no_grad():
        torch.testing.assert_close(exp.scores,
                                   build_adapter(model).scores(x))


def test_staa_batch_and_views_are_independent():
    sm = small('timesformer:divST')
    model, x = sm.model, sm.inputs
    x2 = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    one = build_explainer('staa', model).attribute(x2).extras['token_map']
    both = build_explainer('staa', model).attribute(
        torch.cat([x, x2], 1)).extras['token_map']
    batch = build_explainer('staa', model).attribute(
        torch.cat([x, x2])).extras['token_map']
    torch.testing.assert_close(both[:, 1], one[:, 0])
    torch.testing.assert_close(batch[1:], one)


def planted_vit():
    """One-block VideoMAE ViT reading token 0 (no mean pooling); zero
    positional embedding, zero norm/value biases and a zero input except
    tubelet ``K``, so every key but ``K`` is 0. With ``q_bias = beta k_K``
    the first query's logits are ``L_h = scale beta |k_K,h|^2`` at ``K`` and 0
    elsewhere: ``A_h[0, K] = e^L_h / (e^L_h + N - 1)``."""
    from mmaction.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = load_recognition_config(REPS['videomae']).model
    cfg.backbone.update(num_frames=4, img_size=32, embed_dims=32,
                        num_heads=2, depth=1, use_mean_pooling=False)
    cfg.cls_head.update(num_classes=5, in_channels=32)
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MODELS.build(cfg).eval()
    bb = model.backbone
    blk = bb.blocks[0]
    x = torch.zeros(1, 1, 3, 4, 32, 32)
    x[..., 2:4, 0:16, 16:32] = torch.randn(
        3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    k_index = (1 * 2 + 0) * 2 + 1  # tubelet (t=1, h=0, w=1) in (t h w)
    c, heads = 32, 2
    with torch.no_grad():
        bb.pos_embed.zero_()
        bb.patch_embed.projection.bias.zero_()
        blk.norm1.bias.zero_()
        blk.attn.v_bias.zero_()
        tokens = bb.patch_embed(x[:, 0])[0][0]  # [N, C]
        k = F.linear(blk.norm1(tokens[k_index]), blk.attn.qkv.weight[c:2 * c])
        kh = k.view(heads, -1)
        scale = blk.attn.scale
        beta = 3.0 / (scale * kh.pow(2).sum(1).min())
        blk.attn.q_bias.copy_(beta * k)
        logits = scale * beta * kh.pow(2).sum(1)  # [heads]
    n = tokens.shape[0]
    a_k = (logits.exp() / (logits.exp() + n - 1)).mean()
    a_other = (1 / (logits.exp() + n - 1)).mean()
    return model, x, (1, 0, 1), a_k, a_other


def test_planted_vit_known_attention():
    model, x, (t, h, w), a_k, a_other = planted_vit()
    tok = build_explainer('staa', model).attribute(x).extras['token_map'][
        0, 0]
    expected = torch.full_like(tok, float(a_other))
    expected[t, h, w] = a_k
    torch.testing.assert_close(tok, expected, rtol=1e-5, atol=1e-7)
    assert tok.flatten().argmax() == (t * 2 + h) * 2 + w
    # dynamic threshold keeps the top token only; focus squares the map
    top = build_explainer('staa', model, threshold=0.9).attribute(
        x).extras['token_map'][0, 0]
    assert (top > 0).sum() == 1 and top[t, h, w] == tok[t, h, w]
    sq = build_explainer('staa', model, focus=2).attribute(x).extras[
        'token_map'][0, 0]
    torch.testing.assert_close(sq, tok ** 2 / (tok ** 2).sum() * tok.sum())
    assert math.isclose(float(sq.sum()), float(tok.sum()), rel_tol=1e-5)


def test_name_options_and_unsupported_families():
    assert method_name('STAA') == 'staa' and STAA.name == 'staa'
    model = small('videomae').model
    for bad in (dict(threshold=1.0), dict(focus=0.5), dict(layer=7),
                dict(layer='last')):
        with pytest.raises(MMXAIError):
            build_explainer('staa', model, **bad)
    mvit = build_small(REPS['mvit'], size=32).model
    with pytest.raises(UnsupportedModelError, match='use gradcam'):
        build_explainer('staa', mvit)


def test_toolbox_view_chunks_give_the_same_map():
    sm = small('timesformer:divST')
    model, x = sm.model, sm.inputs
    x3 = torch.cat([x, x.flip(-1), x.flip(-2)], 1)  # 3 views
    plain = build_explainer('staa', model).attribute(x3)
    saved = model.test_cfg
    model.test_cfg = dict(max_testing_views=2)
    try:
        chunked = build_explainer('staa', model).attribute(x3)
    finally:
        model.test_cfg = saved
    torch.testing.assert_close(chunked.extras['token_map'],
                               plain.extras['token_map'])
