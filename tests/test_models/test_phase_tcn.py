"""The two-stage phase recognizer: the toolbox's Recognizer2D (ResNet frame
backbone) with mmxai's CausalMSTCNHead; causality, training loss, online
prediction, feature-sequence attributions and mmxai's explainers on it."""
import numpy as np
import pytest
import torch
from mmaction.structures import ActionDataSample

from tiny_models import PREPROCESSOR_2D, build
from mmxai.explainers import build_explainer
from mmxai.models import (FeatureSequence, feature_integrated_gradients,
                          feature_occlusion)

T, K, S = 12, 7, 32


def tcn_cfg():
    return dict(
        type='Recognizer2D',
        backbone=dict(type='ResNet', depth=18, pretrained=None,
                      torchvision_pretrain=False, norm_eval=False),
        cls_head=dict(type='CausalMSTCNHead', num_classes=K,
                      in_channels=512, num_stages=2, num_layers=4,
                      channels=16),
        data_preprocessor=PREPROCESSOR_2D)


@pytest.fixture(scope='module')
def model():
    m = build(tcn_cfg(), seed=0).eval()
    for p in m.cls_head.parameters():  # a live head (not near-constant)
        p.data.mul_(3)
    return m


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, T, 3, S, S, generator=g)


def test_causal_outputs_at_or_before_t_ignore_later_frames(model):
    x = _inputs()
    for t in (0, 4, 9):
        y = x.clone()
        y[:, t + 1:] = torch.randn_like(y[:, t + 1:]) * 3  # frames after t
        a = FeatureSequence(model, x).logits()
        b = FeatureSequence(model, y).logits()
        torch.testing.assert_close(a[..., :t + 1], b[..., :t + 1])
        if t + 1 < T:
            assert (a[..., t + 1:] - b[..., t + 1:]).abs().max() > 1e-4
    # and a change at frame t does change the output at t
    y = x.clone()
    y[:, 4] += 3
    a, b = FeatureSequence(model, x).logits(), FeatureSequence(model, y
                                                               ).logits()
    assert (a[..., 4] - b[..., 4]).abs().max() > 1e-4


def test_loss_and_online_predict(model):
    x = _inputs()
    samples = []
    for _ in range(2):
        s = ActionDataSample().set_gt_label(3)
        s.set_metainfo(dict(frame_labels=np.array([1] * 6 + [3] * 6)))
        samples.append(s)
    model.train()
    losses = model(torch.cat([x, x]), samples, mode='loss')
    model.eval()
    assert set(losses) == {'loss_cls', 'loss_smooth'}
    assert all(torch.isfinite(v) for v in losses.values())
    out = model(x, [ActionDataSample()], mode='predict')[0]
    want = FeatureSequence(model, x).logits()[0, :, -1].softmax(0)
    torch.testing.assert_close(out.pred_score, want)


def test_feature_attributions(model):
    fs = FeatureSequence(model, _inputs())
    t, c = 7, 2
    occ = feature_occlusion(fs, t, c)
    assert occ.shape == (T, ) and torch.all(occ[t + 1:] == 0)
    assert occ[:t + 1].abs().max() > 0
    ig = feature_integrated_gradients(fs, t, c, steps=64)
    assert torch.all(ig[t + 1:] == 0)
    base = fs.seq.mean(-1, keepdim=True).expand_as(fs.seq)
    gap = fs.logits()[0, c, t] - fs.logits(base.contiguous())[0, c, t]
    # completeness: IG sums to f(x) - f(baseline)
    assert float(ig.sum()) == pytest.approx(float(gap), rel=0.02, abs=1e-3)


def test_mmxai_methods_explain_it(model):
    x = _inputs()
    for method in ('gradcam', 'integrated_gradients'):
        kw = dict(n_steps=4) if method != 'gradcam' else {}
        exp = build_explainer(method, model, **kw).attribute(x, target=2)
        assert tuple(exp.maps.shape) == (1, 1, T, S, S)
        assert torch.isfinite(exp.maps).all()


def test_grid_pool_keeps_where_avg_pool_forgets():
    """spatial_pool='grid': the sequence of a frame whose features moved to
    another place differs (the global mean is the same); each grid cell is
    the mean of its block of the 1x1-reduced features."""
    from mmaction.registry import MODELS

    from mmxai.errors import ConfigError
    kw = dict(type='CausalMSTCNHead', num_classes=K, in_channels=8,
              num_stages=1, num_layers=2, channels=8)
    torch.manual_seed(0)
    grid = MODELS.build(dict(kw, spatial_pool='grid', grid_size=2,
                             grid_channels=3))
    avg = MODELS.build(kw)
    feats = torch.zeros(2, 8, 4, 4)
    feats[0, :, 0, 0] = 1.0                    # top-left
    feats[1, :, 3, 3] = 1.0                    # bottom-right, same content
    torch.testing.assert_close(avg.pool(feats, 1)[0], avg.pool(feats, 1)[1])
    g = grid.pool(feats, 1)                    # [2, 3 * 2 * 2, 1]
    assert g.shape == (2, 12, 1)
    assert (g[0] - g[1]).abs().max() > 1e-3
    red = torch.relu(grid.reduce(feats))       # hand-computed cell means
    want = red.view(2, 3, 2, 2, 2, 2).mean((3, 5)).flatten(1)
    torch.testing.assert_close(g[..., 0], want)
    assert grid.stages[0].inp.in_channels == 12
    with pytest.raises(ConfigError, match='spatial_pool'):
        MODELS.build(dict(kw, spatial_pool='max'))


def _ctx_head(**kw):
    from mmaction.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(dict(type='CausalMSTCNHead', num_classes=K,
                             in_channels=4, num_stages=2, num_layers=2,
                             channels=8, **kw))


def _ctx_batch(B=16, T=8, D=4):
    # every entry tells its window (row) and frame (+1, never 0), so moved
    # frames show
    seq = (torch.arange(B).view(B, 1, 1) * 100.
           + torch.arange(1, T + 1).view(1, 1, T)).expand(B, D, T).contiguous()
    labels = (torch.arange(B).view(B, 1) * 10
              + torch.arange(T).view(1, T)).contiguous()
    return seq, labels


def test_context_swap_does_nothing_in_eval_mode_or_at_zero():
    seq, labels = _ctx_batch()
    head = _ctx_head(context_dropout=1.0).eval()
    s, lab = head.swap_context(seq, labels)
    assert torch.equal(s, seq) and torch.equal(lab, labels)
    head = _ctx_head(context_dropout=0.0).train()
    s, lab = head.swap_context(seq, labels)
    assert torch.equal(s, seq) and torch.equal(lab, labels)
    # predict / forward never swap, even in training mode
    head = _ctx_head(context_dropout=1.0, dropout_ratio=0.0)
    feats = torch.randn(2 * 8, 4)
    head.eval()
    a = head(feats, num_segs=8)
    head.train()
    torch.testing.assert_close(head(feats, num_segs=8), a)


def test_context_swap_replaces_earlier_frames_by_another_window():
    seq, labels = _ctx_batch(B=64)
    B, T = labels.shape
    head = _ctx_head(context_dropout=0.5).train()
    g = torch.Generator().manual_seed(1)
    s, lab = head.swap_context(seq, labels, generator=g)
    hit = 0
    for b in range(B):
        row = (s[b, 0] // 100).long()           # the window each frame is from
        frame = (s[b, 0] % 100).long() - 1
        assert torch.equal(frame, torch.arange(T))  # times kept in place
        assert row[-1] == b                        # the last frame is kept
        assert torch.equal(lab[b], row * 10 + frame)  # labels moved along
        if (row != b).any():
            hit += 1
            j = int((row == b).nonzero()[0])       # first kept frame
            assert 1 <= j <= T - 1
            assert (row[j:] == b).all()            # kept: a suffix
            donor = int(row[0])
            assert donor != b and (row[:j] == donor).all()
    assert 0.3 * B < hit < 0.7 * B                 # about half the windows
    assert torch.equal(seq, _ctx_batch(B=64)[0])  # inputs left unchanged


def test_context_fill_zero_and_last():
    seq, labels = _ctx_batch(B=8)
    T = labels.shape[1]
    for fill in ('zero', 'last'):
        head = _ctx_head(context_dropout=1.0, context_fill=fill).train()
        s, lab = head.swap_context(seq, labels,
                                   generator=torch.Generator().manual_seed(2))
        for b in range(8):
            changed = (s[b, 0] != seq[b, 0])
            j = int((~changed).nonzero()[0])
            assert 1 <= j <= T - 1 and not changed[j:].any()
            assert changed[:j].all()               # every window hit (p=1)
            if fill == 'zero':
                assert (s[b, :, :j] == 0).all() and (lab[b, :j] == -100).all()
            else:
                assert torch.equal(s[b, :, :j],
                                   seq[b, :, -1:].expand(-1, j))
                assert (lab[b, :j] == labels[b, -1]).all()
    from mmxai.errors import ConfigError
    with pytest.raises(ConfigError, match='context_fill'):
        _ctx_head(context_fill='noise')
    with pytest.raises(ConfigError, match='context_dropout'):
        _ctx_head(context_dropout=1.5)


def test_loss_trains_on_the_swapped_windows():
    """In training mode the loss is that of the swapped sequence and labels
    (same random draws); in eval mode that of the original."""
    import torch.nn.functional as F
    head = _ctx_head(context_dropout=1.0, smooth_weight=0.0)
    B, T = 6, 8
    torch.manual_seed(3)
    feats = torch.randn(B * T, 4)
    fl = [np.array([i % K] * 4 + [(i + 1) % K] * 4) for i in range(B)]
    samples = []
    for f in fl:
        s = ActionDataSample().set_gt_label(int(f[-1]))
        s.set_metainfo(dict(frame_labels=f))
        samples.append(s)
    labels = torch.as_tensor(np.stack(fl))

    def ce(seq, lab):
        return sum(F.cross_entropy(o, lab, ignore_index=-100)
                   for o in head.sequence_logits(seq))
    seq = head.pool(feats, T)
    head.eval()
    torch.testing.assert_close(head.loss(feats, samples, num_segs=T)[
        'loss_cls'], ce(seq, labels))
    head.train()
    torch.manual_seed(4)
    got = head.loss(feats, samples, num_segs=T)['loss_cls']
    torch.manual_seed(4)
    s2, l2 = head.swap_context(seq, labels)
    assert not torch.equal(l2, labels)
    torch.testing.assert_close(got, ce(s2, l2))


def test_context_fill_shuffle_takes_independent_frames_of_the_batch():
    seq, labels = _ctx_batch(B=8)
    B, T = labels.shape
    head = _ctx_head(context_dropout=1.0, context_fill='shuffle').train()
    s, lab = head.swap_context(seq, labels,
                               generator=torch.Generator().manual_seed(5))
    sources = set()
    for b in range(B):
        row = (s[b, 0] // 100).long()
        frame = (s[b, 0] % 100).long() - 1
        assert torch.equal(s[b], s[b, :1].expand_as(s[b]))  # whole frames
        assert torch.equal(lab[b], row * 10 + frame)     # labels moved along
        kept = (row == b) & (frame == torch.arange(T))
        j = T - int(torch.flip(kept, [0]).cumprod(0).sum())  # kept suffix
        assert 1 <= j <= T - 1
        sources |= {(int(r), int(f)) for r, f in zip(row[:j], frame[:j])}
    # frames from many windows and times, not one donor's block
    assert len({r for r, _ in sources}) >= 4
    assert len({f for _, f in sources}) >= 4
