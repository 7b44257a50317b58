"""LeGrad against an independent hand computation: per layer, the model
truncated after that block (the head on its tokens is then the model's own
predict path), autograd of its score w.r.t. its last block's recorded
attention, ReLU, means over heads and queries, laid out by explicit token
indices; a planted ViT whose answer is known; model left as found."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.errors import MMXAIError, UnsupportedModelError
from mmxai.explainers import LeGrad, build_explainer, method_name
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
            mode = name.split(':')[1]
            path = REPS['timesformer'].replace('divST', mode)
            _CACHE[name] = build_small(path, size=32)
        else:
            _CACHE[name] = build_small(REPS[name], size=32)
    return _CACHE[name]


def truncated(model, n_blocks):
    """A copy of ``model`` with only its first ``n_blocks`` blocks."""
    m = copy.deepcopy(model)
    bb = m.backbone
    if type(bb).__name__ == 'TimeSformer':
        seq = bb.transformer_layers
        seq.layers = nn.ModuleList(list(seq.layers)[:n_blocks])
    else:
        bb.blocks = nn.ModuleList(list(bb.blocks)[:n_blocks])
    return m


def hand_key_values(model, kind, keys, x):
    """``[M, S]`` per-key values -> ``[t, h, w]`` by explicit indices (one
    sample, one view)."""
    bb = model.backbone
    ad = build_adapter(model)
    if type(bb).__name__ != 'TimeSformer':  # VideoMAE (t h w), no cls
        t, h, w = ad.token_grid(x)
        out = torch.zeros(t, h, w)
        for tt in range(t):
            for i in range(h):
                for j in range(w):
                    out[tt, i, j] = keys[0, (tt * h + i) * w + j]
        return out
    t = bb.num_frames
    h, w = ad.patch_grid(x)
    out = torch.zeros(t, h, w)
    for tt in range(t):
        for i in range(h):
            for j in range(w):
                p = i * w + j
                if kind == 'temporal':  # row per patch, keys = frames
                    out[tt, i, j] = keys[p, tt]
                elif kind == 'spatial' or bb.attention_type == 'space_only':
                    out[tt, i, j] = keys[tt, 1 + p]  # row per frame
                else:  # joint: cls + patch-major (p t)
                    out[tt, i, j] = keys[0, 1 + p * t + tt]
    return out


def hand_legrad(model, x, target, layers):
    maps = []
    for li in layers:
        m = truncated(model, li + 1)
        ad = build_adapter(m)
        with record_attention(m.backbone) as calls, torch.enable_grad():
            s = ad.scores(x)[0, target]
            n_last = 2 if getattr(m.backbone, 'attention_type', '') == \
                'divided_space_time' else 1
            last = calls[-n_last:]
            grads = torch.autograd.grad(s, [c.probs for c in last])
        per_call = [hand_key_values(m, c.kind, F.relu(g).mean(1).mean(1), x)
                    for c, g in zip(last, grads)]
        maps.append(sum(per_call) / len(per_call))
    return sum(maps) / len(maps)


@pytest.mark.parametrize('name', ['timesformer:divST', 'timesformer:jointST',
                                  'timesformer:spaceOnly', 'videomae'])
def test_legrad_equals_hand_computation(name):
    sm = small(name)
    model, x = sm.model, sm.inputs
    snap = ModelSnapshot(model)
    exp = build_explainer('legrad', model).attribute(x, target=2)
    assert not snap.changes()
    n = len(exp.settings['layers'])
    expected = hand_legrad(model, x, 2, range(n))
    torch.testing.assert_close(exp.extras['token_map'][0, 0], expected,
                               rtol=1e-4, atol=1e-7)
    assert expected.abs().sum() > 0
    # the last layer's readout is the model's own score
    torch.testing.assert_close(exp.extras['layer_scores'][0, -1],
                               exp.scores[0, 2], rtol=1e-5, atol=1e-6)
    assert exp.maps.shape == (1, 1) + tuple(x.shape[3:])


def test_start_layer_keeps_last_blocks():
    sm = small('videomae')
    exp = build_explainer('legrad', sm.model, start_layer=-1).attribute(
        sm.inputs, target=1)
    n = len(sm.model.backbone.blocks)
    assert exp.settings['layers'] == [n - 1]
    expected = hand_legrad(sm.model, sm.inputs, 1, [n - 1])
    torch.testing.assert_close(exp.extras['token_map'][0, 0], expected,
                               rtol=1e-4, atol=1e-7)
    with pytest.raises(MMXAIError, match='start_layer'):
        build_explainer('legrad', sm.model, start_layer=n)


def test_views_average_and_batch_independent():
    """Scores average the views, so each view's gradient is 1/V of its
    own; samples of a batch do not mix."""
    sm = small('timesformer:divST')
    model, x = sm.model, sm.inputs
    x2 = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    one = build_explainer('legrad', model).attribute(x, target=0)
    two = build_explainer('legrad', model).attribute(
        torch.cat([x, x2], 1), target=0)
    torch.testing.assert_close(two.extras['token_map'][:, 0],
                               one.extras['token_map'][:, 0] / 2,
                               rtol=1e-4, atol=1e-8)
    batch = build_explainer('legrad', model).attribute(
        torch.cat([x, x2]), target=0)
    torch.testing.assert_close(batch.extras['token_map'][:1],
                               one.extras['token_map'], rtol=1e-4,
                               atol=1e-8)


def planted_vit(seed=0):
    """A one-block VideoMAE ViT whose head reads token 0, built so that only
    token ``K`` carries content: zero positional embedding and biases, zero
    input except tubelet ``K``. Then every other token's value is 0, so the
    score's gradient w.r.t. attention is 0 on every key but ``K``."""
    from mmaction.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = load_recognition_config(REPS['videomae']).model
    cfg.backbone.update(num_frames=4, img_size=32, embed_dims=32,
                        num_heads=2, depth=1, use_mean_pooling=False)
    cfg.cls_head.update(num_classes=5, in_channels=32)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmaction'):
        model = MODELS.build(cfg).eval()
    bb = model.backbone
    with torch.no_grad():
        bb.pos_embed.zero_()
        bb.patch_embed.projection.bias.zero_()
        bb.blocks[0].norm1.bias.zero_()
        bb.blocks[0].attn.v_bias.zero_()
        bb.blocks[0].attn.q_bias.normal_()
    ad = build_adapter(model)
    x = torch.zeros(1, 1, 3, 4, 32, 32)
    t, h, w = 1, 0, 1  # tubelet (frames 2-3, top-right patch)
    x[..., 2 * t:2 * t + 2, 16 * h:16 * h + 16, 16 * w:16 * w + 16] = \
        torch.randn(3, 2, 16, 16, generator=torch.Generator().manual_seed(1))
    grid = ad.token_grid(x)
    return model, x, (t, h, w), grid


def test_planted_vit_legrad_only_on_the_content_token():
    model, x, (t, h, w), grid = planted_vit()
    positive = 0
    for c in range(5):
        tok = build_explainer('legrad', model).attribute(
            x, target=c).extras['token_map'][0, 0]
        assert tok.shape == grid
        outside = tok.clone()
        outside[t, h, w] = 0
        assert outside.abs().max() == 0, c
        positive += int(tok[t, h, w] > 0)
    assert positive > 0  # ReLU keeps the classes the token raises


def test_name_and_unsupported_families():
    assert method_name('LeGrad') == 'legrad' and LeGrad.name == 'legrad'
    assert isinstance(build_explainer('le_grad', small('videomae').model),
                      LeGrad)
    cnn = build_small(REPS['i3d'], size=32).model
    with pytest.raises(UnsupportedModelError, match='use gradcam'):
        build_explainer('legrad', cnn)
    with pytest.raises(MMXAIError, match='start_layer'):
        build_explainer('legrad', small('videomae').model, start_layer='x')


def test_toolbox_view_chunks_give_the_same_map():
    """``test_cfg.max_testing_views`` runs the backbone on chunks of views:
    the blocks' tokens are joined before the readout, so the map is the
    one-pass map."""
    sm = small('videomae')
    model, x = sm.model, sm.inputs
    x3 = torch.cat([x, x.flip(-1), x.flip(-2)], 1)  # 3 views
    plain = build_explainer('legrad', model).attribute(x3, target=4)
    saved = model.test_cfg
    model.test_cfg = dict(max_testing_views=2)
    try:
        chunked = build_explainer('legrad', model).attribute(x3, target=4)
    finally:
        model.test_cfg = saved
    torch.testing.assert_close(chunked.extras['token_map'],
                               plain.extras['token_map'], rtol=1e-4,
                               atol=1e-8)
    torch.testing.assert_close(chunked.scores, plain.scores)
