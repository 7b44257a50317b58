"""preserved_model_state: modes, hooks, gradients and head settings come
back exactly, also when the block raises; only what the block added goes."""
import pytest
import torch
from torch import nn

from mmxai.explainers.gradient_utils import frozen_parameters
from mmxai.utils.model_state import preserved_model_state


def _model():
    m = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    m.cls_head = nn.Linear(2, 2)
    m.cls_head.average_clips = 'prob'
    return m


def _hooks(m):
    return [(len(x._forward_hooks), len(x._forward_pre_hooks),
             len(x._backward_hooks), len(x._forward_hooks_with_kwargs))
            for x in m.modules()]


@pytest.mark.parametrize('fail', [False, True])
def test_everything_the_block_changed_is_restored(fail):
    m = _model()
    m.train()
    m[2].eval()  # mixed modes on entry
    keep = m[0].register_forward_hook(lambda *a: None)  # present on entry
    m[2].weight.requires_grad_(False)
    g = torch.ones_like(m[0].weight)
    m[0].weight.grad = g
    modes = [x.training for x in m.modules()]
    hooks = _hooks(m)

    with pytest.raises(RuntimeError) if fail else _null():
        with preserved_model_state(m):
            m.eval()
            m[0].register_forward_hook(lambda *a: None)  # beside `keep`
            m[1].register_forward_pre_hook(lambda *a: None)  # empty before
            m[2].register_forward_hook(lambda *a, **k: None, with_kwargs=True)
            m.register_full_backward_hook(lambda *a: None)
            for p in m.parameters():
                p.requires_grad_(True)
                p.grad = torch.zeros_like(p)
            m.cls_head.average_clips = 'score'
            if fail:
                raise RuntimeError('midway')
    assert [x.training for x in m.modules()] == modes
    assert _hooks(m) == hooks
    assert list(m[0]._forward_hooks) == [keep.id]
    assert not m[2].weight.requires_grad and m[0].weight.requires_grad
    assert m[0].weight.grad is g and m[2].weight.grad is None
    assert m.cls_head.average_clips == 'prob'


def test_frozen_parameters_restores_only_what_it_froze():
    m = _model()
    m[2].weight.requires_grad_(False)
    with frozen_parameters(m):
        assert not any(p.requires_grad for p in m.parameters())
    assert not m[2].weight.requires_grad
    assert all(p.requires_grad for n, p in m.named_parameters()
               if n != '2.weight')


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
