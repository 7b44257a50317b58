"""Gradient checkpointing of the input-gradient methods
(``mmxai/explainers/grad_checkpoint.py``): segments found from the model's
structure, maps equal with and without it on real MMAction2 families, the
graph held between forward and backward smaller (bytes saved for backward,
counted with ``saved_tensors_hooks``), the model left as found, and the
``'auto'`` rule."""
import pytest
import torch

from mmxai.errors import MMXAIError
from mmxai.explainers import build_explainer
from mmxai.explainers.grad_checkpoint import (check_grad_checkpoint,
                                              checkpointed_segments,
                                              find_segments,
                                              wants_checkpointing)
from mmxai.explainers.gradient_utils import frozen_parameters
from mmxai.testing.coverage import ModelSnapshot
from mmxai.testing.toolbox_configs import REPRESENTATIVES, build_small
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsn_cfg


def _small(family, size, frames=None):
    small = build_small(f'{family}/{REPRESENTATIVES[family]}', size=size,
                        seed=2)
    inputs = small.inputs if frames is None else \
        small.inputs[:, :, :, :frames].contiguous()
    return small.model, inputs


class _Families(dict):
    """Real MMAction2 models of four families, each with a small input
    (few frames: the tests compare gradients, not quality), built when
    first asked for."""
    def __missing__(self, name):
        if name in ('i3d', 'tsn'):
            model = build(i3d_cfg() if name == 'i3d' else tsn_cfg(), seed=1)
            data = clip_batch(views=1, frames=4, size=16, seed=3) \
                if name == 'i3d' else clip_batch(views=1, frames=2,
                                                 two_d=True, seed=3)
            value = (model, preprocess(model, data)['inputs'])
        else:
            value = _small(name, 32, frames=4 if name == 'x3d' else None)
        self[name] = value
        return value


@pytest.fixture(scope='module')
def families():
    return _Families()


def _names(model, modules):
    index = {id(m): n for n, m in model.named_modules()}
    return [index[id(m)] for m in modules]


#: the block lists each family's segments must come from (the expected
#: answer, written from the toolbox's module structure)
EXPECTED_PREFIXES = {
    'i3d': ('backbone.layer1.', 'backbone.layer4.'),
    'tsn': ('backbone.layer1.', 'backbone.layer4.'),
    'x3d': ('backbone.layer1.', 'backbone.layer4.'),
    'timesformer': ('backbone.transformer_layers.layers.', ) * 2,
}


@pytest.mark.parametrize('family', list(EXPECTED_PREFIXES))
def test_segments_are_the_backbones_blocks(families, family):
    model, _ = families[family]
    segments = find_segments(model)
    names = _names(model, segments)
    first, last = EXPECTED_PREFIXES[family]
    assert len(names) >= 2
    assert names[0].startswith(first) and names[-1].startswith(last)
    for a in names:  # none inside another, all composite blocks
        assert not any(b.startswith(a + '.') for b in names if b != a)
    assert all(any(True for _ in m.children()) for m in segments)


def _maps(method, model, inputs, on, **opts):
    exp = build_explainer(method, model, grad_checkpoint=on, progress=False,
                          **opts)
    snap = ModelSnapshot(model)
    out = exp.attribute(inputs, target=1)
    assert snap.changes() == []
    assert not any('forward' in vars(m) for m in model.modules())
    assert exp.last_memory_plan['grad_checkpoint'] is on
    return out


def _assert_equal_maps(a, b):
    scale = a.abs().max()
    assert scale > 0
    torch.testing.assert_close(b / scale, a / scale, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('family', ['i3d', 'tsn', 'timesformer'])
def test_maps_equal_with_and_without_checkpointing(families, family):
    """Integrated Gradients on I3D (with its completeness extras), plain
    gradients on the others (the same gradient pass)."""
    model, inputs = families[family]
    method, opts = ('integrated_gradients', dict(n_steps=2, batch_size=2)) \
        if family == 'i3d' else ('saliency', dict(batch_size=1))
    a, b = (_maps(method, model, inputs, on, **opts) for on in (False, True))
    _assert_equal_maps(a.raw_maps, b.raw_maps)
    _assert_equal_maps(a.extras['attributions'], b.extras['attributions'])
    if method == 'integrated_gradients':
        torch.testing.assert_close(b.extras['convergence_delta'],
                                   a.extras['convergence_delta'],
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.sweep
@pytest.mark.parametrize('family', ['i3d', 'tsn', 'x3d', 'timesformer'])
@pytest.mark.parametrize('method,opts', [
    ('integrated_gradients', dict(n_steps=3, batch_size=2)),
    ('smoothgrad', dict(n_samples=2, batch_size=1))])
def test_more_methods_equal_on_more_families(families, family, method,
                                            opts):
    model, inputs = families[family]
    a, b = (_maps(method, model, inputs, on, **opts) for on in (False, True))
    _assert_equal_maps(a.raw_maps, b.raw_maps)


def test_smoothgrad_equal(families):
    model, inputs = families['timesformer']
    a, b = (_maps('smoothgrad', model, inputs, on, n_samples=1)
            for on in (False, True))
    _assert_equal_maps(a.raw_maps, b.raw_maps)


def _saved_bytes(model, x, on):
    """What autograd holds for the backward when the forward of one view
    ends (the storages of the tensors saved for backward, counted once with
    ``saved_tensors_hooks``; checkpointing saves its segments' inputs
    through the same hooks), the largest bytes saved while one segment
    runs (without checkpointing: the graph a checkpointed backward
    recomputes at a time), whether everything saved inside a segment was
    that segment's input, and the input gradient."""
    saved, inputs, per_segment = {}, {}, {}
    active = []
    segments = find_segments(model)

    def pack(t):
        st = t.untyped_storage()
        saved[st.data_ptr()] = st.nbytes()
        if active:
            per_segment.setdefault(active[-1], {})[st.data_ptr()] = \
                st.nbytes()
        return t

    def enter(mod, args):
        inputs.setdefault(id(mod), set()).add(
            args[0].untyped_storage().data_ptr())
        active.append(id(mod))

    handles = [s.register_forward_pre_hook(enter) for s in segments] + [
        s.register_forward_hook(lambda *a: (active.pop(), None)[1])
        for s in segments]
    x = x.clone().requires_grad_(True)
    try:
        with frozen_parameters(model), checkpointed_segments(model, on), \
                torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            score = model.cls_head(model.backbone(x))[:, 1].sum()
            held = sum(saved.values())
            grad, = torch.autograd.grad(score, x)
    finally:
        for h in handles:
            h.remove()
    largest = max((sum(d.values()) for d in per_segment.values()),
                  default=0)
    only_inputs = all(set(d) <= inputs[k] for k, d in per_segment.items())
    return held, largest, only_inputs, grad


def test_graph_held_for_the_backward_drops(families):
    model, inputs = families['i3d']
    x = inputs[0, :1]  # one view [1, C, T, H, W]
    full, largest, _, g_full = _saved_bytes(model, x, False)
    held, _, only_inputs, g_ckpt = _saved_bytes(model, x, True)
    assert only_inputs  # checkpointed segments keep their inputs only
    assert torch.equal(g_ckpt, g_full)
    # the forward keeps less than half; with the largest segment's graph
    # recomputed on top (the backward's peak) still well below the whole
    assert held < 0.5 * full
    assert held + largest < 0.75 * full


def test_model_left_as_found_also_on_failure(families):
    model, inputs = families['i3d']
    segment = find_segments(model)[0]
    own = segment.forward  # an instance forward set by someone else
    segment.forward = own
    try:
        snap = ModelSnapshot(model)
        with pytest.raises(RuntimeError, match='boom'):
            with checkpointed_segments(model) as segments:
                assert all('forward' in vars(m) for m in segments)
                raise RuntimeError('boom')
        assert snap.changes() == []
        assert vars(segment)['forward'] is own
        assert not any('forward' in vars(m) for m in model.modules()
                       if m is not segment)
    finally:
        del segment.forward


def test_auto_rule_and_options(families):
    assert check_grad_checkpoint('on') is True
    assert check_grad_checkpoint('false') is False
    assert check_grad_checkpoint('auto') == 'auto'
    with pytest.raises(MMXAIError, match='grad_checkpoint'):
        check_grad_checkpoint('sometimes')
    assert wants_checkpointing('auto', True, None)
    assert not wants_checkpointing('auto', False, dict(
        view_graph_bytes=10, budget=20))
    assert wants_checkpointing('auto', False, dict(
        view_graph_bytes=30, budget=20))
    assert not wants_checkpointing(False, True, None)
    model, inputs = families['timesformer']
    for memory, on in (('toolbox', True), ('64G', False), (4096, True)):
        exp = build_explainer('saliency', model, max_memory=memory,
                              progress=False)
        exp.attribute(inputs, target=0)
        assert exp.last_memory_plan['grad_checkpoint'] is on, memory
    with pytest.raises(MMXAIError, match='grad_checkpoint'):
        build_explainer('saliency', model, grad_checkpoint='sometimes')


def test_auto_switches_on_before_giving_up_out_of_memory(families):
    """One view with batch 1 'does not fit' unless checkpointed (a
    segment's pre-hook raises CUDA's out-of-memory error when its forward
    is not the checkpointed one): 'auto' retries checkpointed, ``False``
    gives the one-line error."""
    model, inputs = families['timesformer']
    segment = find_segments(model)[0]

    def oom(mod, args):
        if torch.is_grad_enabled() and 'forward' not in vars(mod):
            raise torch.cuda.OutOfMemoryError('CUDA out of memory.')

    handle = segment.register_forward_pre_hook(oom)
    try:
        exp = build_explainer('integrated_gradients', model, n_steps=1,
                              batch_size=1, max_memory='64G',
                              progress=False)
        out = exp.attribute(inputs, target=0)
        assert exp.last_memory_plan['grad_checkpoint'] is True
        ref = build_explainer('integrated_gradients', model, n_steps=1,
                              batch_size=1, grad_checkpoint=True,
                              progress=False).attribute(inputs, target=0)
        torch.testing.assert_close(out.raw_maps, ref.raw_maps)
        off = build_explainer('integrated_gradients', model, n_steps=1,
                              batch_size=1, grad_checkpoint=False,
                              progress=False)
        with pytest.raises(MMXAIError, match='out of memory'):
            off.attribute(inputs, target=0)
    finally:
        handle.remove()


def test_cli_option_reaches_the_explainer(families):
    """``tools/explain.py --grad-checkpoint on`` -> the method option, which
    the builder accepts for the gradient methods."""
    import os.path as osp
    import sys
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    sys.path.insert(0, osp.join(root, 'tools'))
    import explain as cli
    args = cli.parse_args(['cfg.py', 'ckpt.pth', 'video.mp4', '--method',
                           'integrated_gradients', '--grad-checkpoint', 'on'])
    opts = cli.method_options(args)
    assert opts['grad_checkpoint'] == 'on'
    model, _ = families['i3d']
    exp = build_explainer('integrated_gradients', model, **opts)
    assert exp.grad_checkpoint is True
    assert 'grad_checkpoint' not in cli.method_options(
        cli.parse_args(['cfg.py', 'ckpt.pth', 'video.mp4']))
