"""Attention rollout / relevance on UniFormer (v1): local relation
aggregators (depthwise convs in residuals), strided patch embeddings and
global attention, against dense matrices built here from the modules and
the recorded attention."""
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.adapters import build_adapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.testing.coverage import ModelSnapshot
from mmxai.testing.toolbox_configs import build_small, representative_configs
from tests.test_explainers.test_attention_mvit import dense_pool


def test_uniformer_rollout_and_relevance_match_dense_products():
    sm = build_small(representative_configs()['uniformer'], size=32)
    model, x = sm.model, sm.inputs
    ad = build_adapter(model)
    bb = model.backbone
    with torch.no_grad():
        plain = ad.scores(x)
    # the modules in call order, found here from the model's structure
    convs = []
    for i in range(1, 5):
        convs.append(('conv_pool', getattr(bb, f'patch_embed{i}').proj))
        for blk in getattr(bb, f'blocks{i}'):
            convs.append(('local', blk.pos_embed))
            convs.append(('local', blk.attn) if isinstance(
                blk.attn, torch.nn.Conv3d) else ('full', None))
    sizes = {}
    handles = [m.register_forward_pre_hook(
        lambda mod, a: sizes.setdefault(mod, tuple(a[0].shape[2:])) and None)
        for k, m in convs if m is not None]
    try:
        with record_attention(bb) as calls, torch.enable_grad():
            scores = ad.scores(x)
            probs = [c.probs for c in calls]
            grads = torch.autograd.grad(scores[0, 3], probs)
    finally:
        for h in handles:
            h.remove()
    torch.testing.assert_close(scores.detach(), plain, rtol=1e-5, atol=1e-6)
    assert [c.kind for c in calls] == ['full'] * sum(
        k == 'full' for k, _ in convs)
    snap = ModelSnapshot(model)

    def product(rule):
        """Dense product over the calls after patch_embed1, last first."""
        full = iter(zip(probs, grads))
        mats = []
        for kind, m in convs[1:]:
            if kind == 'full':
                p, g = next(full)
                mats.append(rule('full', (p.detach(), g)))
            else:
                size = sizes[m]
                mats.append(rule(kind, dense_pool(m, size, m.in_channels)))
        c = None
        for o in mats:
            c = o if c is None else o @ c
        return c

    def rollout(kind, arg):
        if kind == 'conv_pool':
            return arg
        if kind == 'local':
            return (torch.eye(arg.shape[0]) + arg) / 2
        a = arg[0].mean(1)[0] + torch.eye(arg[0].shape[-1])
        return a / a.sum(-1, keepdim=True)

    def relevance(kind, arg, gated=True):
        if kind == 'conv_pool':
            return arg
        if kind == 'local':
            return torch.eye(arg.shape[0])
        n = arg[0].shape[-1]
        abar = F.relu(arg[1] * arg[0]).mean(1)[0] if gated else 0
        return torch.eye(n) + abar

    c = product(rollout)
    expected = c.mean(0)
    exp = build_explainer('attention_rollout', model).attribute(x, target=3)
    tok = exp.extras['token_map']
    assert tok.shape == (1, 1, 4, 8, 8)
    torch.testing.assert_close(tok.reshape(-1), expected, rtol=1e-4,
                               atol=1e-7)
    torch.testing.assert_close(tok.sum(), torch.tensor(1.0), rtol=1e-4,
                               atol=0)
    r = product(relevance)
    ident = product(lambda k, a: relevance(k, a, gated=False)
                    if k == 'full' else relevance(k, a))
    expected = (r - ident).mean(0)
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=3)
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1), expected,
                               rtol=1e-4, atol=1e-8)
    assert expected.abs().max() > 0
    assert not snap.changes()
