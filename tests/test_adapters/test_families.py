"""Family-specific checks: SlowFast pathways, transformer token grids,
attention rollout / relevance against dense hand-built operators."""
import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.adapters.slowfast import SlowFastAdapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import apply_operator, record_attention
from mmxai.testing.coverage import ModelSnapshot
from mmxai.utils.hooks import capture_activations
from mmxai.testing.toolbox_configs import build_small, representative_configs

REPS = representative_configs()
_CACHE = {}


def small(family, **kw):
    key = (family, tuple(sorted(kw.items())))
    if key not in _CACHE:
        _CACHE[key] = build_small(REPS[family], **kw)
    return _CACHE[key]


def timesformer(attention_type):
    path = REPS['timesformer'].replace('divST', {
        'divided_space_time': 'divST', 'joint_space_time': 'jointST',
        'space_only': 'spaceOnly'}[attention_type])
    key = ('timesformer', attention_type)
    if key not in _CACHE:
        _CACHE[key] = build_small(path, size=32)
    return _CACHE[key]


# ------------------------------------------------------------- SlowFast
def test_slowfast_pathway_maps_and_fusion():
    sm = small('slowfast')
    model = sm.model
    x = torch.randn(1, 1, 3, 16, 64, 64, generator=torch.Generator()
                    .manual_seed(1))
    adapter = build_adapter(model)
    assert isinstance(adapter, SlowFastAdapter)
    rate = model.backbone.resample_rate
    fast_rate = rate // model.backbone.speed_ratio
    assert adapter.pathway_frames(16) == {'slow': 16 // rate,
                                          'fast': 16 // fast_rate}
    snap = ModelSnapshot(model)
    exp = build_explainer('gradcam', model).attribute(x)
    assert not snap.changes()
    slow, fast = adapter.default_target_layers()
    assert 'slow_path' in slow and 'fast_path' in fast
    assert exp.layer_maps[slow].shape == (1, 1, 16 // rate, 64, 64)
    assert exp.layer_maps[fast].shape == (1, 1, 16 // fast_rate, 64, 64)
    fused = F.interpolate(exp.layer_maps[slow][:, :1], size=(16, 64, 64),
                          mode='trilinear', align_corners=False)
    fused = fused + F.interpolate(exp.layer_maps[fast][:, :1],
                                  size=(16, 64, 64), mode='trilinear',
                                  align_corners=False)
    torch.testing.assert_close(exp.raw_maps, fused)
    assert exp.layer_maps[slow].std() > 0 and exp.layer_maps[fast].std() > 0


def test_slowfast_saliency_tubes_split_weights():
    """CAM identity per pathway: sum_p mean_{thw} W_p A_p = S_c - b_c, with
    the classifier weights split (fast channels first, as the head
    concatenates)."""
    sm = small('slowfast')
    model = sm.model
    exp = build_explainer('saliency_tubes', model).attribute(sm.inputs,
                                                             target=2)
    cams = exp.extras['feature_maps']
    assert set(cams) == {'backbone.slow_path', 'backbone.fast_path'}
    total = sum(c.mean(dim=(2, 3, 4)) for c in cams.values())  # [B, V]
    bias = model.cls_head.fc_cls.bias[2]
    torch.testing.assert_close(total[:, 0], exp.scores[:, 2] - bias,
                               rtol=1e-4, atol=1e-4)
    # the split is by pathway: the slow half alone is not the whole score
    slow_only = cams['backbone.slow_path'].mean(dim=(2, 3, 4))[:, 0]
    assert not torch.allclose(slow_only, exp.scores[:, 2] - bias)


# ------------------------------------------------------ transformer grids
def test_timesformer_token_grid_layout():
    sm = timesformer('divided_space_time')
    ad = build_adapter(sm.model)
    b, v, t, _, _ = ad.input_shape(sm.inputs)
    h, w = ad.patch_grid(sm.inputs)
    assert (h, w) == (32 // 16, 32 // 16) and t == 4
    p_idx = torch.arange(h * w).view(h * w, 1).expand(h * w, t)
    t_idx = torch.arange(t).view(1, t).expand(h * w, t)
    code = (p_idx * 100 + t_idx).reshape(-1).float()  # patch-major (p t)
    tokens = torch.cat([torch.full((1,), -1.), code]).view(1, -1, 1)
    grid = ad.activation_grid('x', tokens.expand(b * v, -1, 3), sm.inputs)
    assert grid.shape == (b, v, 3, t, h, w)
    for tt in range(t):
        for i in range(h):
            for j in range(w):
                assert grid[0, 0, 0, tt, i, j] == (i * w + j) * 100 + tt
    # patch embedding output [(B T), P, C] -> the projection's conv grid
    with capture_activations(sm.model, ['backbone.patch_embed']) as st, \
            torch.no_grad():
        ad.scores(sm.inputs)
    act = st.collect()['backbone.patch_embed']
    grid = ad.activation_grid('backbone.patch_embed', act, sm.inputs)
    frames = sm.inputs[0, 0].transpose(0, 1)  # [T, C, H, W]
    with torch.no_grad():
        conv = sm.model.backbone.patch_embed.projection(frames)
    torch.testing.assert_close(grid[0, 0], conv.transpose(0, 1))


def test_videomae_grid_is_the_tubelet_projection():
    sm = small('videomae')
    ad = build_adapter(sm.model)
    name = 'backbone.patch_embed'
    with capture_activations(sm.model, [name]) as st, torch.no_grad():
        ad.scores(sm.inputs)
    grid = ad.activation_grid(name, st.collect()[name], sm.inputs)
    with torch.no_grad():
        conv = sm.model.backbone.patch_embed.projection(sm.inputs[:, 0])
    torch.testing.assert_close(grid[:, 0], conv)
    tubelet = sm.model.backbone.patch_embed.projection.stride[0]
    assert grid.shape[3] == sm.inputs.shape[3] // tubelet  # T / 2


def test_mvit_stage_grid_matches_block_resolution():
    sm = small('mvit')
    ad = build_adapter(sm.model)
    names = [f'backbone.blocks.{i}' for i in range(len(sm.model.backbone
                                                        .blocks))]
    with capture_activations(sm.model, names) as st, torch.no_grad():
        ad.scores(sm.inputs)
    acts = st.collect()
    for n in names:
        tokens, size = acts[n]
        grid = ad.activation_grid(n, tokens, sm.inputs)
        assert tuple(grid.shape[3:]) == tuple(size), n


def test_swin_stage_layers_are_channel_last():
    sm = small('swin')
    ad = build_adapter(sm.model)
    with capture_activations(sm.model, ['backbone.layers.3', 'backbone']) \
            as st, torch.no_grad():
        ad.scores(sm.inputs)
    acts = st.collect()
    stage = ad.activation_grid('backbone.layers.3', acts['backbone.layers.3'],
                               sm.inputs)
    out = ad.activation_grid('backbone', acts['backbone'], sm.inputs)
    assert stage.shape[2] == out.shape[2] == sm.model.cls_head.in_channels
    torch.testing.assert_close(
        sm.model.backbone.norm3(acts['backbone.layers.3']).permute(
            0, 4, 1, 2, 3), out[:, 0])


@pytest.mark.parametrize('family', ['timesformer', 'videomae', 'mvit',
                                    'uniformerv2', 'swin'])
def test_transformer_default_layer_receives_gradient(family):
    sm = small(family)
    exp = build_explainer('gradcam', sm.model).attribute(sm.inputs)
    assert torch.isfinite(exp.raw_maps).all()
    assert exp.raw_maps.abs().sum() > 0, 'default layer got no gradient'


# ------------------------------------------------------------ attention
def _dense_operators(calls, lay, reduce):
    """Dense N x N operators per algorithms.md section 6 (one sample)."""
    t, p = lay['t'], lay['h'] * lay['w']
    n = 1 + p * t
    ops = []
    for kind, probs in calls:
        a = reduce(probs)
        o = torch.zeros(n, n)
        if kind == 'full':
            o = a[0]
        elif kind == 'temporal':  # block-diagonal T x T per patch
            o[0, 0] = 1
            for pp in range(p):
                idx = 1 + pp * t + torch.arange(t)
                o[idx[:, None], idx[None, :]] = a[pp]
        else:  # spatial: (1+P) x (1+P) per frame, cls row averaged
            for tt in range(t):
                idx = torch.cat([torch.zeros(1, dtype=torch.long),
                                 1 + torch.arange(p) * t + tt])
                o[idx[1:, None], idx[None, :]] = a[tt][1:]
                o[0, idx[1:]] += a[tt][0, 1:] / t
                o[0, 0] += a[tt][0, 0] / t
        ops.append(o)
    return ops


@pytest.mark.parametrize('mode', ['divided_space_time', 'joint_space_time'])
def test_rollout_and_relevance_match_dense_products(mode):
    sm = timesformer(mode)
    model, x = sm.model, sm.inputs
    ad = build_adapter(model)
    with torch.no_grad():
        plain = ad.scores(x)
    with record_attention(model.backbone) as calls, torch.enable_grad():
        scores = ad.scores(x)
        recorded = [(c.kind, c.probs) for c in calls]
        grads = torch.autograd.grad(scores[0, 1], [c for _, c in recorded])
    torch.testing.assert_close(scores.detach(), plain, rtol=1e-4, atol=1e-5)
    kinds = [k for k, _ in recorded]
    n_layers = len(model.backbone.transformer_layers.layers)
    expect = ['temporal', 'spatial'] * n_layers if mode.startswith('div') \
        else ['full'] * n_layers
    assert kinds == expect
    t = model.backbone.num_frames
    h, w = ad.patch_grid(x)
    lay = dict(t=t, h=h, w=w)
    n = 1 + h * w * t
    eye = torch.eye(n)
    # rollout: C = prod rownorm(mean_h A + I); map = C[cls, patches]
    ops = _dense_operators([(k, p.detach()) for k, p in recorded], lay,
                           lambda a: a.mean(1))
    c = eye
    for o in ops:
        a = o + eye
        c = (a / a.sum(-1, keepdim=True)) @ c
    expected = c[0, 1:].view(h * w, t).t().reshape(1, 1, t, h, w)
    exp = build_explainer('attention_rollout', model).attribute(x, target=1)
    torch.testing.assert_close(exp.extras['token_map'], expected,
                               rtol=1e-4, atol=1e-6)
    # Chefer: R = I; R <- R + mean_h ReLU(grad * A) R
    ops = _dense_operators(
        [(k, F.relu(g * p.detach())) for (k, p), g in zip(recorded, grads)],
        lay, lambda a: a.mean(1))
    r = eye
    for o in ops:
        r = r + o @ r
    expected = r[0, 1:].view(h * w, t).t().reshape(1, 1, t, h, w)
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=1)
    torch.testing.assert_close(exp.extras['token_map'], expected,
                               rtol=1e-4, atol=1e-6)
    assert exp.maps.shape == (1, 1, t, 32, 32)


def test_rollout_hand_example():
    """Two tokens, one layer: A = [[.5, .5], [0, 1]] -> rownorm(A + I) =
    [[.75, .25], [0, 1]]; the cls row is [.75, .25]."""
    a = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    r = torch.tensor([[1.0, 0.0]])
    norm = a.sum(-1) + 1
    out = apply_operator(r / norm, 'full', a, 1, 1) + r / norm
    torch.testing.assert_close(out, torch.tensor([[0.75, 0.25]]))


def test_space_only_rollout_is_per_frame():
    sm = timesformer('space_only')
    exp = build_explainer('attention_rollout', sm.model).attribute(
        sm.inputs)
    tok = exp.extras['token_map']  # [1, 1, T, h, w]
    t = sm.model.backbone.num_frames
    assert tok.shape[2] == t
    # each frame's cls row of a row-stochastic product sums to 1 over cls +
    # patches, weighted 1/T: patch mass per frame is below 1/T
    assert (tok.sum(dim=(3, 4)) < 1.0 / t + 1e-6).all()
    assert (tok > 0).all()


def test_videomae_relevance_uses_column_mean():
    sm = small('videomae')
    model, x = sm.model, sm.inputs
    ad = build_adapter(model)
    with record_attention(model.backbone) as calls, torch.enable_grad():
        scores = ad.scores(x)
        probs = [c.probs for c in calls]
        grads = torch.autograd.grad(scores[0, 3], probs)
    n = probs[0].shape[-1]
    r = torch.eye(n)
    for p, g in zip(probs, grads):
        r = r + F.relu(g * p.detach()).mean(1)[0] @ r
    expected = (r - torch.eye(n)).mean(0)
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=3)
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1), expected,
                               rtol=1e-4, atol=1e-7)
    t, h, w = ad.token_grid(x)
    assert exp.extras['token_map'].shape == (1, 1, t, h, w)


def test_attention_methods_refuse_models_without_attention():
    from mmxai.errors import UnsupportedModelError
    with pytest.raises(UnsupportedModelError, match='use gradcam'):
        build_explainer('attention_rollout', small('i3d').model)


def test_tpn_scores_equal_predict():
    sm = small('tpn')
    model = sm.model
    ad = build_adapter(model)
    with torch.no_grad():
        ours = ad.scores(sm.inputs)
        feats, kw = model.extract_feat(sm.inputs, test_mode=True)
        theirs = model.cls_head(feats, **kw)  # fcn_test path (no grad)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_c2d_inner_layers_regroup_time_folded_in_batch():
    """C2D folds time into the batch inside its stages: '(b t) c h w'."""
    import torch.nn.functional as F
    from mmxai.explainers import GradCAM
    from mmxai.testing.toolbox_configs import build_small, representative_configs
    small = build_small(representative_configs()['c2d'], size=32)
    model, x = small.model, small.inputs
    exp = GradCAM(model, target_layers=['backbone.layer3']).attribute(x)
    b, v = x.shape[:2]
    assert exp.maps.shape == (b, v) + tuple(x.shape[-3:])
    # hand-computed: per-frame layer3 activations regrouped by hand
    acts = {}
    h = model.backbone.layer3.register_forward_hook(
        lambda m, i, o: acts.__setitem__('a', o))
    with torch.enable_grad():
        xx = x.detach().requires_grad_(True)
        s = model.cls_head(model.backbone(xx.flatten(0, 1)))
        c = int(exp.targets[0])
        g, = torch.autograd.grad(s[:, c].sum() / v, acts['a'])
    h.remove()
    a = acts['a'].detach()
    t = a.shape[0] // (b * v)
    a = a.view(b, v, t, *a.shape[1:])
    g = g.view(b, v, t, *g.shape[1:])
    w = g.mean(dim=(2, 4, 5), keepdim=True)
    cam = F.relu((w * a).sum(3))  # [b, v, t, h, w]
    ref = F.interpolate(cam.flatten(0, 1)[:, None], size=x.shape[-3:],
                        mode='trilinear', align_corners=False)
    torch.testing.assert_close(exp.raw_maps, ref.view_as(exp.raw_maps),
                               rtol=1e-4, atol=1e-6)
