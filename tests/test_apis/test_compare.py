"""compare_methods on the bundled demo model: the metric values are the
registered metrics' on the same maps, n/a and failing methods are listed
and the comparison goes on, files are written through the one writer, and
the recommendation follows the numbers."""
import copy
import json
import os.path as osp

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(ROOT, 'configs', 'demo', 'i3d_tiny_synthetic.py')
CKPT = osp.join(ROOT, 'demo', 'i3d_tiny_synthetic.pth')
VIDEO = osp.join(ROOT, 'demo', 'demo.mp4')


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    from mmxai.apis import compare as cmp
    real = cmp.build_explainer

    def flaky(name, model, **kw):  # a method that fails on every clip
        if name == 'saliency':
            raise RuntimeError('planted failure')
        return real(name, model, **kw)
    cmp.build_explainer = flaky
    out = str(tmp_path_factory.mktemp('cmp') / 'out')
    try:
        from mmxai.apis import init_recognizer
        model = init_recognizer(CFG, CKPT)
        result = cmp.compare_methods(
            model, [VIDEO], methods=['gradcam', 'saliency_tubes', 'saliency',
                                     'attention_rollout'], out_dir=out)
    finally:
        cmp.build_explainer = real
    return model, result, out


def test_summary_lists_na_and_failures(run):
    _, result, _ = run
    s = result.summary
    assert set(s['methods']) == {'gradcam', 'saliency_tubes'}
    assert [x['method'] for x in s['not_applicable']] == ['attention_rollout']
    assert 'global self-attention' in s['not_applicable'][0]['reason']
    assert [x['method'] for x in s['failures']] == ['saliency']
    assert 'planted failure' in s['failures'][0]['error']
    for m in s['methods'].values():
        assert m['seconds'] > 0 and m['clips'] == 1
        assert m['faithfulness'] == pytest.approx(m['insertion'] -
                                                  m['deletion'])
        assert m['sanity_passed'] in (True, False)
    assert s['sanity_cascade'] == ['cls_head', 'backbone.layer4']
    assert s['random'] is not None


def test_metrics_equal_the_registered_metrics(run):
    from mmxai.apis.compare import BUDGETS
    from mmxai.evaluation import (AverageDrop, DeletionInsertionAUC,
                                  ExplainedBatch, ModelRandomization)
    model, result, _ = run
    exp = result.explanations[0]['gradcam']
    from mmxai.apis import load_video_sample
    data = model.data_preprocessor(load_video_sample(VIDEO, model.cfg).data,
                                   False)
    from mmxai.adapters import build_adapter
    batch = ExplainedBatch([0], [0], data['inputs'], data['data_samples'],
                           exp, build_adapter(model),
                           explainer_cfg=dict(type='gradcam'), ranks=[0])
    row = result.summary['per_clip'][0]['methods']['gradcam']
    di = DeletionInsertionAUC(**BUDGETS['fast']['deletion'])
    got = di.compute_metrics(di.evaluate_batch(batch))
    assert row['deletion'] == pytest.approx(got['deletion_auc'], abs=1e-6)
    assert row['insertion'] == pytest.approx(got['insertion_auc'], abs=1e-6)
    ad = AverageDrop()
    assert row['average_drop'] == pytest.approx(
        ad.compute_metrics(ad.evaluate_batch(batch))['average_drop'],
        abs=1e-4)
    mr = ModelRandomization(cascade=['cls_head', 'backbone.layer4'],
                            max_samples=1)
    got = mr.compute_metrics(mr.evaluate_batch(batch))
    assert row['sanity_last'] == pytest.approx(
        got['randomization_spearman'], abs=1e-6)
    assert row['sanity_head'] == pytest.approx(
        got['randomization_spearman_head'], abs=1e-6)


def test_files_through_the_writer(run):
    _, result, out = run
    names = {osp.relpath(p, out) for p in result.files.values()}
    assert {'compare.json', 'compare.md', 'agreement.png', 'index.html',
            'clips/00/overlay.mp4', 'clips/00/montage.png'} <= names
    rec = json.load(open(osp.join(out, 'clips', '00', 'record.json')))
    assert sorted(rec['files']) == ['maps_gradcam.npz',
                                    'maps_saliency_tubes.npz']
    npz = np.load(osp.join(out, 'clips', '00', 'maps_gradcam.npz'))
    assert npz['original_maps'].ndim == 3
    for m in ('gradcam', 'saliency_tubes'):
        assert osp.getsize(osp.join(out, 'clips', '00', f'{m}.mp4')) > 0
    summary = json.load(open(osp.join(out, 'compare.json')))
    assert summary['recommendation'] == result.recommendation
    md = open(osp.join(out, 'compare.md')).read()
    assert '| gradcam |' in md and 'attention_rollout' in md
    assert 'planted failure' in md
    ag = summary['agreement']
    assert ag['methods'] == ['gradcam', 'saliency_tubes']
    assert ag['matrix'][0][0] == 1.0 and -1 <= ag['matrix'][0][1] <= 1
    import cv2
    img = cv2.imread(osp.join(out, 'clips', '00', 'montage.png'))
    assert img.shape[0] > 200 and img.shape[1] > 600


def _summary(**faith):
    """A hand-made summary: per method (deletion, insertion, seconds,
    sanity_last)."""
    methods = {k: dict(deletion=d, insertion=i, faithfulness=i - d,
                       seconds=t, sanity_last=s, sanity_passed=s < 0.5,
                       beats_random=d < 0.6 and i > 0.7)
               for k, (d, i, t, s) in faith.items()}
    names = list(methods)
    return dict(methods=methods, videos=['a.mp4'], budget='fast',
                random=dict(deletion=0.6, insertion=0.7),
                sanity_cascade=['cls_head', 'backbone.layer4'],
                sanity_threshold=0.5,
                agreement=dict(methods=names, matrix=np.eye(
                    len(names)).tolist()))


def test_recommendation_follows_the_numbers():
    from mmxai.apis.compare import recommend
    s = _summary(a=(0.2, 0.9, 3.0, 0.1), b=(0.3, 0.8, 0.5, 0.2),
                 c=(0.1, 0.95, 0.1, 0.9), d=(0.7, 0.6, 0.01, 0.0))
    lines = recommend(s)
    assert lines[0].startswith('most faithful here: a ')
    assert any('c scores higher' in x and 'fails the sanity' in x
               for x in lines)
    assert any(x.startswith('fastest that beats a random map on both '
                            'curves and passes the sanity check: b ')
               for x in lines)
    assert any('do not beat a random map' in x and x.endswith(': d')
               for x in lines)
    assert any(x.startswith('fail the sanity check') and 'c (0.90)' in x
               for x in lines)
    # other numbers, other answer: nothing is hard-coded
    s2 = copy.deepcopy(s)
    s2['methods']['b'].update(deletion=0.05, faithfulness=0.75)
    assert recommend(s2)[0].startswith('most faithful here: b ')
    assert recommend(dict(methods={}, videos=[]))[0].startswith('no method')


def test_bad_inputs_before_the_model(tmp_path):
    from mmxai.apis import compare_methods
    from mmxai.errors import MMXAIError
    out = tmp_path / 'out'
    with pytest.raises(MMXAIError, match='unknown method'):
        compare_methods(CFG, [VIDEO], methods=['nope'], out_dir=str(out),
                        checkpoint=CKPT)
    with pytest.raises(MMXAIError, match='unknown budget'):
        compare_methods(CFG, [VIDEO], budget='huge', checkpoint=CKPT)
    with pytest.raises(MMXAIError):
        compare_methods(CFG, [str(tmp_path / 'missing.mp4')],
                        checkpoint=CKPT)
    assert not out.exists() or not any(out.iterdir())


def test_budget_settings():
    from mmxai.apis.compare import budget_settings, resolve_methods
    occ = budget_settings('fast', 'occlusion', (1, 1, 3, 16, 64, 64))
    assert occ['window'] == (4, 16, 16) and occ['stride'] == (4, 16, 16)
    assert budget_settings('full', 'rise', (1, 1, 3, 16, 64, 64)) == {}
    assert resolve_methods(['GradCAM++', 'gradcampp', 'gradcam']) == [
        'gradcam++', 'gradcam']
    assert 'lime' in resolve_methods(all_methods=True)
