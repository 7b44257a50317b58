"""``score='prob'`` is the probability ``predict`` reports with
``average_clips='prob'``: each view's softmax, averaged over views (not the
softmax of the view-averaged score)."""
import pytest
import torch

from mmxai.adapters import build_adapter
from mmxai.explainers import build_explainer
from mmxai.explainers.attribution import Attribution
from mmxai.explainers.base import BaseExplainer
from mmxai.explainers.targets import resolve_targets
from mmxai.explainers.view_scorer import ViewScorer
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsm_cfg


def predicted_scores(model, data):
    with torch.no_grad():
        preds = model.test_step(data)  # average_clips='prob' in the configs
    return torch.stack([p.pred_score for p in preds])


def test_adapter_probs_are_predicts_pred_score():
    for cfg, two_d in ((i3d_cfg(), False), (tsm_cfg(), True)):
        model = build(cfg, seed=2)
        data = clip_batch(batch=2, views=3, two_d=two_d, seed=1)
        x = preprocess(model, data)['inputs']
        with torch.no_grad():
            probs = build_adapter(model).probs(x)
            logits = build_adapter(model).scores(x)
        torch.testing.assert_close(probs, predicted_scores(model, data))
        assert not torch.allclose(probs, logits.softmax(-1), atol=1e-6)


def test_view_scorer_prob_is_predicts_pred_score():
    model = build(i3d_cfg(), seed=2)
    data = clip_batch(batch=2, views=3, seed=1)
    x = preprocess(model, data)['inputs']
    pred = predicted_scores(model, data)
    scorer = ViewScorer(build_adapter(model), x, 'prob')
    target = pred.argmax(-1)
    for b in range(2):
        for v in range(3):
            clean = scorer.clean(b, v)
            torch.testing.assert_close(clean, pred[b])
            torch.testing.assert_close(clean[target[b]], pred[b, target[b]])
    # a perturbed view: the whole input with that view replaced, as the
    # toolbox scores it
    noise = torch.randn(2, *x.shape[2:], generator=torch.Generator(
    ).manual_seed(0))
    got = scorer(1, 2, noise)
    for n in range(2):
        whole = x[1:2].clone()
        whole[0, 2] = noise[n]
        with torch.no_grad():
            ref = build_adapter(model).probs(whole)[0]
        torch.testing.assert_close(got[n], ref)


class ProbGradient(BaseExplainer):
    """A toy view-separable method: ``|d P_c / d x|`` of the adapter's
    ``probs`` (for the view-chunk test)."""
    views_separable = True

    def _attribute(self, inputs, target, data_samples):
        with torch.enable_grad():
            x = inputs.detach().requires_grad_(True)
            probs = self.adapter.probs(x)
            targets = resolve_targets(target, probs, data_samples)
            objective = probs.gather(1, targets.view(-1, 1)).sum()
            grad, = torch.autograd.grad(objective, x)
        raw = self.adapter.to_video(grad).abs().sum(2)
        return Attribution(raw, self.adapter.scores(inputs).detach(), targets,
                           extras={'probs': probs.detach()[:, None]
                                   .expand(-1, raw.shape[1], -1)})


def test_view_chunks_scale_probs_exactly():
    model = build(i3d_cfg(), seed=2)
    data = preprocess(model, clip_batch(batch=2, views=5, seed=1))
    x = data['inputs']
    one = ProbGradient(model, max_views_per_pass=None).attribute(x, [1, 3])
    chunked = ProbGradient(model, max_views_per_pass=2)
    two = chunked.attribute(x, [1, 3])
    scale = one.raw_maps.abs().max()
    assert scale > 0
    torch.testing.assert_close(two.raw_maps / scale, one.raw_maps / scale,
                               rtol=1e-4, atol=1e-5)
    # the chunks' scaled probabilities add up to the whole input's
    parts = two.extras['probs'][:, [0, 2, 4]].sum(1)
    torch.testing.assert_close(parts, one.extras['probs'][:, 0])
    assert 'probs' not in vars(chunked.adapter)
    assert 'scores' not in vars(chunked.adapter)


def test_occlusion_prob_clean_score_is_predicts():
    """The clean score occlusion explains in 'prob' mode (its scorer's) is
    predict's pred_score of the target, for every view."""
    model = build(i3d_cfg(), seed=2)
    data = clip_batch(batch=1, views=2, seed=1)
    x = preprocess(model, data)['inputs']
    exp = build_explainer(dict(type='occlusion', window=(8, 32, 32),
                               stride=(8, 32, 32), progress=False),
                          model)
    scores, targets, scorer = exp.view_scorer(x, 'pred', None, 'prob')
    pred = predicted_scores(model, data)
    for v in range(2):
        torch.testing.assert_close(scorer.clean(0, v)[targets[0]],
                                   pred[0, targets[0]])


def test_saliency_prob_is_gradient_of_predicts_pred_score():
    model = build(i3d_cfg(), seed=2)
    x = preprocess(model, clip_batch(views=2, seed=1))['inputs']
    exp = build_explainer(dict(type='saliency', score='prob',
                               reduction='sum', progress=False),
                          model).attribute(x, 1)
    with torch.enable_grad():
        xg = x.detach().requires_grad_(True)
        scores = model.cls_head(model.backbone(xg.flatten(0, 1)))
        prob = scores.softmax(-1).mean(0)[1]  # the toolbox's 'prob'
        grad, = torch.autograd.grad(prob, xg)
    torch.testing.assert_close(exp.raw_maps, grad.sum(2), rtol=1e-4,
                               atol=1e-7)


def disagreeing_views():
    """A TSM and a 3-view input whose views disagree: the arg-max of the
    per-view softmax averaged (predict's pred_label, average_clips='prob')
    is not the arg-max of the view-averaged scores."""
    from mmaction.structures import ActionDataSample
    model = build(tsm_cfg(), seed=2)
    g = torch.Generator().manual_seed(77)
    views = torch.randn(3, 3, 8, 32, 32, generator=g) * torch.tensor(
        [0.5, 3., 1.5]).view(3, 1, 1, 1, 1) + torch.randn(
        3, 1, 1, 1, 1, generator=g)
    x = views.permute(0, 2, 1, 3, 4).reshape(1, 24, 3, 32, 32)
    with torch.no_grad():
        pred = model(x, [ActionDataSample()], mode='predict')[0]
        logits = build_adapter(model).scores(x)
    assert int(logits.argmax()) != int(pred.pred_label)  # they disagree
    return model, x, pred


PROB_METHODS = [
    ('gradcam', dict(max_views_per_pass=None)),
    ('gradcam', dict(max_views_per_pass=1)),
    ('saliency_tubes', dict(max_views_per_pass=2)),
    ('saliency', dict(progress=False)),
    ('integrated_gradients', dict(n_steps=2, max_views_per_pass=2,
                                  progress=False)),
    ('occlusion', dict(window=(8, 32, 32), stride=(8, 32, 32),
                       progress=False)),
    ('rise', dict(num_masks=2, progress=False)),
    ('CaptumExplainer', dict(algorithm='Saliency')),
]


def test_pred_and_probs_are_predicts_when_views_disagree():
    """'pred' is predict's pred_label and Explanation.probs (the JSON's
    'prob' and top-5) its pred_score, not the arg-max / softmax of the
    view-averaged scores."""
    model, x, pred = disagreeing_views()
    for method, opts in PROB_METHODS:
        exp = build_explainer(method, model, **opts).attribute(x, 'pred')
        assert int(exp.targets[0]) == int(pred.pred_label), method
        torch.testing.assert_close(exp.probs[0], pred.pred_score)
        summary = exp.summary()
        assert summary['target']['prob'] == pytest.approx(
            float(pred.pred_score[pred.pred_label]), abs=1e-6)
        top = pred.pred_score.topk(5)
        assert [t['class'] for t in summary['top5']] == top.indices.tolist()
        assert [t['prob'] for t in summary['top5']] == pytest.approx(
            top.values.tolist(), abs=1e-6)
        # given targets: probabilities all the same
        other = build_explainer(method, model, **opts).attribute(x, 0)
        torch.testing.assert_close(other.probs[0], pred.pred_score)


def test_methods_without_own_probs_get_predicts_pred():
    """A method that resolves 'pred' from the view-averaged score itself
    (the toy ProbGradient's own argmax of probs aside) gets 'pred'
    resolved before it runs, with several views."""
    model, x, pred = disagreeing_views()

    class LogitArgmax(BaseExplainer):
        def _attribute(self, inputs, target, data_samples):
            with torch.no_grad():
                scores = self.adapter.scores(inputs)
            targets = resolve_targets(target, scores, data_samples)
            raw = self.adapter.to_video(inputs).abs().sum(2)
            return Attribution(raw, scores, targets)

    exp = LogitArgmax(model).attribute(x, 'pred')
    assert int(exp.targets[0]) == int(pred.pred_label)
    torch.testing.assert_close(exp.probs[0], pred.pred_score)


def test_captum_prob_forward_is_predicts_pred_score():
    model = build(i3d_cfg(), seed=2)
    data = clip_batch(batch=2, views=3, seed=1)
    x = preprocess(model, data)['inputs']
    exp = build_explainer(dict(type='CaptumExplainer', algorithm='Saliency',
                               score='prob'), model)
    with torch.no_grad():
        got = exp._forward(x)
    torch.testing.assert_close(got, predicted_scores(model, data))
