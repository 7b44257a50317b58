"""Class Feature Pyramids: exact kernels on a hand-made network, grouped
convolutions, branches/concatenation, outputs, and real toolbox models."""
import json

import pytest
import torch
from torch import nn

import tiny_models as tm
from mmaction.registry import MODELS
from mmxai.explainers import build_explainer
from mmxai.explainers.cfp import ClassFeaturePyramid, trace_channels
from mmxai.explainers.cfp.walker import _round6
from mmxai.testing.cfp_reference import PerKernelWalker
from mmxai.errors import MMXAIError
from mmxai.outputs import extras_writer


@MODELS.register_module(name='MMXAITestCFPStack', force=True)
class CFPStack(nn.Module):
    """conv_a (3x3x3, 3->4) -> ReLU -> conv_b (1x1x1, 4->4, ``groups``) ->
    ReLU -> conv_c (1x2x2, 4->4) -> ReLU. Weights are set by the tests."""

    def __init__(self, groups: int = 1):
        super().__init__()
        self.conv_a = nn.Conv3d(3, 4, 3, padding=1)
        self.conv_b = nn.Conv3d(4, 4, 1, groups=groups)
        self.conv_c = nn.Conv3d(4, 4, (1, 2, 2), padding=0)
        self.relu = nn.ReLU(inplace=True)

    def init_weights(self):
        pass

    def forward(self, x):
        return self.relu(self.conv_c(self.relu(self.conv_b(
            self.relu(self.conv_a(x))))))


def _hand_made(groups=1, kappa_b=None):
    """Recognizer3D(CFPStack, I3DHead) whose informative kernels are known.

    Every conv input is constant 1 (alpha = 1), so ``p = minmax(kappa)``.
    """
    cfg = dict(type='Recognizer3D',
               backbone=dict(type='MMXAITestCFPStack', groups=groups),
               cls_head=dict(type='I3DHead', num_classes=3, in_channels=4,
                             spatial_type='avg', dropout_ratio=0.0,
                             average_clips='prob'),
               data_preprocessor=tm.PREPROCESSOR_3D)
    model = MODELS.build(cfg).eval()
    bb = model.backbone
    with torch.no_grad():
        bb.conv_a.weight.zero_()
        bb.conv_a.bias.fill_(1.0)                      # a1 = 1 everywhere
        kb = torch.tensor(kappa_b)                     # [4, 4 / groups]
        bb.conv_b.weight.copy_(kb.view(4, -1, 1, 1, 1))
        bb.conv_b.bias.copy_(1.0 - kb.sum(1))          # a2 = 1 everywhere
        kc = torch.tensor([[0.1, 1.0, 0.0, 0.65],      # -> {1, 3}
                           [1.0, 1.0, 1.0, 1.0],
                           [0.0, 0.0, 1.0, 0.0],
                           [1.0, 0.0, 0.3, 0.0]])      # -> {0}
        # taps (2k, 0, k, k): the mean over the 1x2x2 extent is k
        taps = torch.stack([2 * kc, 0 * kc, kc, kc], -1).view(4, 4, 1, 2, 2)
        bb.conv_c.weight.copy_(taps)
        bb.conv_c.bias.zero_()
        fc = model.cls_head.fc_cls                     # already in [0, 1]
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.8],   # seeds {0, 3}
                                      [0.0, 1.0, 0.0, 0.0],
                                      [0.0, 0.0, 1.0, 0.3]]))
        fc.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))  # class 0 predicted
    return model


KAPPA_B = [[1.0, 0.7, 0.1, 0.0],   # -> {0, 1}
           [0.0, 0.0, 1.0, 0.5],   # -> {2}
           [0.3, 0.3, 0.3, 0.3],
           [0.9, 0.0, 0.2, 1.0]]   # -> {0, 3}


def _tree(node):
    """{(layer, kernel): sorted children (layer, kernel)} of a graph."""
    out = {}

    def visit(n):
        key = (n['layer'], n['kernel'])
        if n['children'] or n.get('expanded'):
            out[key] = sorted((c['layer'], c['kernel']) for c in n['children'])
        for c in n['children']:
            visit(c)
    visit(node)
    return out


def _inputs(size=8):
    return torch.zeros(1, 1, 3, 4, size, size)


def test_hand_made_network_exact_kernels():
    model = _hand_made(kappa_b=KAPPA_B)
    cfp = ClassFeaturePyramid(model, theta=0.6, depth=2)
    exp = cfp.attribute(_inputs(), target=0)
    graph = exp.extras['cfp_graph'][0]
    a, b, c = 'backbone.conv_a', 'backbone.conv_b', 'backbone.conv_c'
    assert graph['class'] == 0 and graph['root']['id'] == 'class:0'
    assert _tree(graph['root']) == {
        ('cls_head', 0): [(c, 0), (c, 3)],
        (c, 0): [(b, 1), (b, 3)],
        (c, 3): [(b, 0)],
        (b, 1): [(a, 2)],
        (b, 3): [(a, 0), (a, 3)],
        (b, 0): [(a, 0), (a, 1)],
    }
    seed_scores = {n['kernel']: n['score'] for n in graph['root']['children']}
    assert seed_scores == pytest.approx({0: 1.0, 3: 0.8})
    # level 3 = depth + 1: leaves, not expanded
    leaves = [n for s in graph['root']['children'] for m in s['children']
              for n in m['children']]
    assert leaves and all(not n['children'] and 'expanded' not in n
                          for n in leaves)
    # tubes: root = sum of seed channels of the head input (2 x relu(4k))
    tubes = exp.extras['cfp_tubes']
    assert tubes['class:0'].shape == (1, 1, 4, 8, 8)
    feats = model.backbone(_inputs()[:, 0])
    expected = feats[:, [0, 3]].sum(1)  # [1, 4, 7, 7] -> upsampled
    assert torch.allclose(exp.raw_maps[0, 0, :, 3, 3], expected[0, :, 3, 3])
    # node (conv_c, 0): sum of its children's activations (conv_c input = 1)
    assert torch.allclose(tubes[f'{c}:0'], torch.full((1, 1, 4, 8, 8), 2.0))
    # a lower theta keeps more, a higher one fewer
    loose = ClassFeaturePyramid(model, theta=0.05, depth=1).attribute(
        _inputs(), target=0).extras['cfp_graph'][0]
    assert sorted(n['kernel'] for n in loose['root']['children']) == [0, 3]
    assert len(_tree(loose['root'])[(c, 0)]) == 3


def test_depth_reaches_network_input():
    model = _hand_made(kappa_b=KAPPA_B)
    graph = ClassFeaturePyramid(model, theta=0.6, depth=3).attribute(
        _inputs(), target=0).extras['cfp_graph'][0]
    tree = _tree(graph['root'])
    # conv_a's input is the video: its weights are 0, so p is constant
    # 0 and no RGB channel is selected.
    assert tree[('backbone.conv_a', 0)] == []


@pytest.mark.parametrize('groups', [2, 4])
def test_grouped_and_depthwise_kernels_stay_in_their_group(groups):
    per = 4 // groups
    kb = [[1.0, 0.2], [0.1, 0.9], [0.3, 1.0], [1.0, 0.5]] if groups == 2 \
        else [[1.0], [0.5], [0.7], [2.0]]
    model = _hand_made(groups=groups, kappa_b=kb)
    graph = ClassFeaturePyramid(model, theta=0.6, depth=2).attribute(
        _inputs(), target=0).extras['cfp_graph'][0]
    tree = _tree(graph['root'])
    b, a = 'backbone.conv_b', 'backbone.conv_a'
    for (layer, k), kids in tree.items():
        if layer != b:
            continue
        assert kids, (layer, k)
        assert all(j // per == k // per for _, j in kids)
    if groups == 2:
        assert tree[(b, 0)] == [(a, 0)] and tree[(b, 1)] == [(a, 1)]
        assert tree[(b, 3)] == [(a, 2)]
    else:  # depth-wise: each kernel sees exactly its own channel
        assert all(kids == [(a, k)] for (layer, k), kids in tree.items()
                   if layer == b)


def test_trace_channels_concatenation_and_residual():
    """Channel offsets through a concatenation (SlowFast laterals) and the
    residual branch chosen over the shortcut."""
    torch.manual_seed(0)
    c1, c2, c3 = nn.Conv3d(2, 6, 1), nn.Conv3d(2, 5, 1), nn.Conv3d(8, 8, 1)
    markers = {}
    x = torch.randn(1, 2, 2, 4, 4, requires_grad=True)
    y1, y2 = c1(x), c2(x)
    markers[y1.grad_fn], markers[y2.grad_fn] = 'c1', 'c2'
    cat = torch.relu(torch.cat([y2, y1[:, 1::2]], 1))  # channel slice
    y3 = c3(cat)
    markers[y3.grad_fn] = 'c3'
    res = torch.relu(y3 + cat)
    assert trace_channels(cat, markers) == \
        [('c2', j) for j in range(5)] + [('c1', j) for j in (1, 3, 5)]
    assert trace_channels(res, markers) == [('c3', j) for j in range(8)]
    assert trace_channels(x, markers) == [None, None]


def _restored(model, before):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                for m in model.modules())
    return hooks == before and not model.training


def test_tiny_i3d_outputs_and_restored(tmp_path):
    model = tm.build(tm.i3d_cfg())
    before = sum(len(m._forward_hooks) + len(m._forward_pre_hooks)
                 for m in model.modules())
    data = tm.preprocess(model, tm.clip_batch(batch=2))
    cfp = build_explainer(dict(type='cfp', theta=0.6, depth=2), model)
    exp = cfp.attribute(data['inputs'])
    assert _restored(model, before)
    assert exp.maps.shape == (2, 1, 8, 32, 32)
    graphs = exp.extras['cfp_graph']
    assert len(graphs) == 2 and graphs[0]['root']['children']
    layers = {n['layer'] for n in graphs[0]['root']['children']}
    assert layers == {'backbone.layer4.1.conv2.conv'}
    for node_id, tube in exp.extras['cfp_tubes'].items():
        assert tube.shape == (2, 1, 8, 32, 32), node_id
    assert len(exp.extras['cfp_tubes']) <= 1 + 6 * 2 * 2
    # same result on a second call (deterministic, nothing left behind)
    again = cfp.attribute(data['inputs'])
    assert again.extras['cfp_graph'] == graphs
    # found by registration under the method's name, as every mode does
    paths = extras_writer(exp.method)(exp, str(tmp_path),
                                      class_names=list('abcde'))
    assert [p.split('/')[-1] for p in paths] == ['cfp_graph.json',
                                                 'cfp_pyramid.png']
    with open(paths[0]) as f:
        assert json.load(f) == json.loads(json.dumps(graphs[0]))
    with open(paths[1], 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    assert not list(tmp_path.glob('.*tmp*'))


def test_tiny_csn_depthwise():
    cfg = tm.i3d_cfg()
    cfg['backbone'] = dict(type='ResNet3dCSN', depth=50, pretrained=None,
                           base_channels=4, num_stages=2,
                           bottleneck_mode='ir', temporal_strides=(1, 2),
                           spatial_strides=(1, 2), dilations=(1, 1),
                           out_indices=(1, ), stage_blocks=(1, 1),
                           with_pool2=False)
    cfg['cls_head']['in_channels'] = 32
    model = tm.build(cfg)
    data = tm.preprocess(model, tm.clip_batch())
    exp = ClassFeaturePyramid(model, theta=0.5, depth=3).attribute(
        data['inputs'])
    tree = _tree(exp.extras['cfp_graph'][0]['root'])
    mods = dict(model.named_modules())
    dw = [(k, kids) for (layer, k), kids in tree.items()
          if getattr(mods.get(layer), 'groups', 1) > 1]
    assert dw
    for k, kids in dw:  # depth-wise conv2: only its own channel
        assert [j for _, j in kids] in ([], [k])


def test_tiny_tsn_2d():
    model = tm.build(tm.tsn_cfg())
    data = tm.preprocess(model, tm.clip_batch(frames=4, two_d=True))
    exp = ClassFeaturePyramid(model, depth=1,
                              frames_per_view=4).attribute(data['inputs'])
    assert exp.maps.shape == (1, 1, 4, 32, 32)
    root = exp.extras['cfp_graph'][0]['root']
    assert root['children'] and all(
        n['layer'].startswith('backbone.layer4') for n in root['children'])


def test_bad_options():
    model = tm.build(tm.i3d_cfg())
    with pytest.raises(MMXAIError):
        ClassFeaturePyramid(model, theta=1.5)
    with pytest.raises(MMXAIError):
        ClassFeaturePyramid(model, depth=-1)
    assert ClassFeaturePyramid(model, theta='i3d').theta == 0.65


def _with_reference(model, inputs, target='pred', **kwargs):
    """Explanations by the batched walker and the per-kernel reference."""
    fast = ClassFeaturePyramid(model, **kwargs)
    ref = ClassFeaturePyramid(model, **kwargs)
    ref._walker_cls = PerKernelWalker
    return (fast.attribute(inputs, target=target),
            ref.attribute(inputs, target=target))


def _assert_identical(fast, ref):
    assert fast.extras['cfp_graph'] == ref.extras['cfp_graph']
    # same key order too (the JSON file)
    assert json.dumps(fast.extras['cfp_graph']) == \
        json.dumps(ref.extras['cfp_graph'])
    tf, tr = fast.extras['cfp_tubes'], ref.extras['cfp_tubes']
    assert list(tf) == list(tr)
    for node_id in tf:
        assert torch.equal(tf[node_id], tr[node_id]), node_id
    assert torch.equal(fast.raw_maps, ref.raw_maps)


@pytest.mark.parametrize('groups,kb,theta,depth', [
    (1, KAPPA_B, 0.6, 3), (1, KAPPA_B, 0.0, 2),
    (2, [[1.0, 0.2], [0.1, 0.9], [0.3, 1.0], [1.0, 0.5]], 0.6, 3),
    (4, [[1.0], [0.5], [0.7], [2.0]], 0.05, 3)])
def test_batched_back_step_matches_reference_hand_made(groups, kb, theta,
                                                       depth):
    model = _hand_made(groups=groups, kappa_b=kb)
    _assert_identical(*_with_reference(model, _inputs(), target=0,
                                       theta=theta, depth=depth))


@pytest.mark.parametrize('kwargs', [
    dict(theta=0.5, depth=3),
    dict(theta=0.3, depth=4, max_children=3, tubes_per_level=2)])
def test_batched_back_step_matches_reference_tiny_i3d(kwargs):
    """Batch of 2 clips x 2 views: per-sample graphs and tubes."""
    model = tm.build(tm.i3d_cfg())
    data = tm.preprocess(model, tm.clip_batch(batch=2, views=2))
    fast, ref = _with_reference(model, data['inputs'], **kwargs)
    assert sum(len(g['root']['children']) for g in
               fast.extras['cfp_graph']) > 0
    _assert_identical(fast, ref)


@pytest.mark.parametrize('max_children', [None, 20])
def test_batched_back_step_matches_reference_with_ties(max_children):
    """Dead input channels (alpha = 0) give many equal normalised products
    above theta: their order (and which survive ``max_children``) must
    be ``argsort``'s, as in the per-kernel reference."""
    model = tm.build(tm.i3d_cfg(base_channels=16))
    with torch.no_grad():  # every other channel into layer4.1.conv2: 0
        model.backbone.layer4[1].conv1.bn.bias[::2] = -1e3
    data = tm.preprocess(model, tm.clip_batch())
    fast, ref = _with_reference(model, data['inputs'], theta=0.4, depth=2,
                                max_children=max_children)
    _assert_identical(fast, ref)
    if max_children is None:  # the case is exercised: a big tie group
        tied = []

        def visit(n):
            scores = [c['score'] for c in n['children']]
            tied.append(max((scores.count(v) for v in scores), default=0))
            for c in n['children']:
                visit(c)
        visit(fast.extras['cfp_graph'][0]['root'])
        assert max(tied) > 16


def test_round6_is_python_round():
    x = torch.cat([torch.rand(20000),
                   (torch.arange(0, 10 ** 6, 97).double() + 0.5).div(1e6),
                   torch.tensor([0.0, 1.0, 5e-7, 1.5e-6, 2.5e-6, 1e-40])])
    x = x.float()
    assert _round6(x).tolist() == [round(v, 6) for v in x.tolist()]
