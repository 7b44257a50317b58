"""explain_phase_sequence: a two-stage phase model (the procedure
benchmark's config, random weights) over a generated procedure; the
feature cache (backbone calls counted, resume after a kill, a changed input
refused), IG completeness and Shapley efficiency on the real head,
causality, the receptive-field bound against the whole sequence, equality
with the per-window FeatureSequence path, outputs and bad input."""
import csv
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from mmxai.apis import explain_phase_sequence, init_recognizer
from mmxai.apis import phase_sequence as ps
from mmxai.errors import InputError, OutputError, UnsupportedModelError
from mmxai.explainers.sequence_attribution import receptive_field
from mmxai.models import (FeatureSequence, feature_integrated_gradients,
                          feature_occlusion)
from mmxai.testing.coverage import ModelSnapshot

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/surgical/resnet18s2_tcn_procedures.py')
DURATION = 40  # s: 200 frames at 5 fps, 40 grid frames at 1 fps


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One torch thread: on shared, loaded cores the many small
    convolutions of the TCN are ~100x slower with two threads spinning."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def procedure(tmp_path_factory):
    from mmxai.datasets.procedures import generate_procedures
    root = tmp_path_factory.mktemp('proc')
    paths = generate_procedures(str(root), [1], seed=3, duration_s=DURATION,
                                size=32, duration_jitter=0)[0]
    return dict(root=str(root), **paths)


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    m = init_recognizer(CONFIG)
    for p in m.cls_head.parameters():  # a live head (not near-constant)
        p.data.mul_(2)
    return m


class BackboneCounter:
    """Frames through the backbone, counted by a forward hook."""

    def __init__(self, model):
        self.frames = 0
        self.h = model.backbone.register_forward_hook(self)

    def __call__(self, module, args, out):
        self.frames += int(args[0].shape[0])

    def close(self):
        self.h.remove()


def run(model, video, **kw):
    kw.setdefault('progress', False)
    kw.setdefault('outputs', ('json', 'npz'))
    return explain_phase_sequence(model, video, **kw)


def test_cache_reuse_counts_backbone_frames(model, procedure, tmp_path):
    out = str(tmp_path / 'o')
    snap = ModelSnapshot(model)
    count = BackboneCounter(model)
    try:
        a = run(model, procedure['video'], times=['20s'], until='last',
                out_dir=out, chunk=16, batch_size=8,
                methods=['occlusion'])
        assert count.frames == 21 == a.computed_frames  # grid 0..20
        count.frames = 0
        b = run(model, procedure['video'], times=['35s'], until='last',
                out_dir=out, chunk=16, batch_size=8,
                methods=['occlusion'])
        # only the frames after the cached ones: 21..35
        assert count.frames == 15 == b.computed_frames
        count.frames = 0
        c = run(model, procedure['video'], times=['20s', '35s'],
                until='last', out_dir=out, chunk=16, batch_size=8,
                methods=['occlusion'])
        assert count.frames == 0 == c.computed_frames
    finally:
        count.close()
    assert snap.changes() == []
    # the cached run gives what a run from scratch (no cache) gives
    fresh = run(model, procedure['video'], times=['35s'], until='last',
                methods=['occlusion'])
    np.testing.assert_allclose(b.importance['occlusion'][0],
                               fresh.importance['occlusion'][0], atol=1e-5)
    np.testing.assert_allclose(c.importance['occlusion'][1],
                               fresh.importance['occlusion'][0], atol=1e-5)


def test_resume_after_a_kill(model, procedure, tmp_path, monkeypatch):
    out = str(tmp_path / 'o')
    whole = run(model, procedure['video'], times=['39s'], chunk=8,
                batch_size=4, methods=['occlusion'])
    real = ps.frame_features
    calls = []

    def dies(m, x):
        calls.append(x.shape[1])
        if len(calls) == 4:  # killed in the 4th batch (frames 12..15)
            raise KeyboardInterrupt
        return real(m, x)
    monkeypatch.setattr(ps, 'frame_features', dies)
    with pytest.raises(KeyboardInterrupt):
        run(model, procedure['video'], times=['39s'], out_dir=out, chunk=8,
            batch_size=4, methods=['occlusion'])
    monkeypatch.setattr(ps, 'frame_features', real)
    # chunk 0 (frames 0..7) was complete and written; 8..11 were only
    # buffered: the rerun computes 8..39
    chunks = sorted(f for f in os.listdir(osp.join(out, 'features'))
                    if f.startswith('chunk_'))
    assert chunks == ['chunk_000000.npy']
    count = BackboneCounter(model)
    try:
        res = run(model, procedure['video'], times=['39s'], out_dir=out,
                  chunk=8, batch_size=4, methods=['occlusion'])
    finally:
        count.close()
    assert count.frames == 32 == res.computed_frames
    np.testing.assert_allclose(res.importance['occlusion'],
                               whole.importance['occlusion'], atol=1e-5)
    np.testing.assert_allclose(res.probs, whole.probs, atol=1e-5)


def test_changed_input_is_refused_or_recomputed(model, procedure, tmp_path):
    out = str(tmp_path / 'o')
    run(model, procedure['video'], times=['10s'], out_dir=out,
        methods=['occlusion'])
    other = init_recognizer(CONFIG)  # other random weights
    with pytest.raises(OutputError, match='weights differs'):
        run(other, procedure['video'], times=['10s'], out_dir=out,
            methods=['occlusion'])
    with pytest.raises(OutputError, match='interval differs'):
        run(model, procedure['video'], times=['10s'], out_dir=out,
            methods=['occlusion'], sample_fps=2.5)
    res = run(other, procedure['video'], times=['10s'], out_dir=out,
              methods=['occlusion'], refresh_features=True)
    assert res.computed_frames == DURATION


@pytest.fixture(scope='module')
def full(model, procedure, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('full') / 'o')
    res = run(model, procedure['video'], times=['5s', '25s', '35s', '39s'],
              out_dir=out, gt=procedure['phase'], ig_steps=64,
              outputs=('json', 'npz', 'csv', 'png'))
    res.out = out
    return res


def test_ig_completeness_and_shapley_efficiency_on_the_real_head(full,
                                                                 model):
    totals = []
    for r in full.records:
        total = r['score'] - r['ig_baseline_score']
        totals.append(abs(total))
        assert abs(r['ig_completeness_gap']) < 0.02 * abs(total) + 1e-4
        assert r['ig_sum'] == pytest.approx(full.importance['ig'][
            r['index']].sum(), abs=1e-4)
        # Shapley: efficiency holds exactly (exact mode: 8 players)
        assert r['shapley_exact']
        phi = sum(p['value'] for p in r['shapley_players'])
        assert phi == pytest.approx(r['shapley_v_all'] - r[
            'shapley_v_empty'], abs=1e-6)
        assert r['shapley_v_all'] == pytest.approx(r['score'], abs=1e-5)
    assert max(totals) > 0.1  # a real difference to explain
    # the midpoint rule converges: fewer steps, a larger gap
    from mmxai.explainers.sequence_attribution import (
        context_baseline, context_integrated_gradients)
    seq = torch.from_numpy(full.cache.read(0, 40))
    ctx = seq[:, 11:36]
    gaps = [abs(context_integrated_gradients(
        model.cls_head, ctx, 2, context_baseline(ctx), steps=s)['gap'])
        for s in (2, 128)]
    assert gaps[1] < gaps[0]


def test_zero_after_t_and_outside_the_receptive_field(full, model):
    R = receptive_field(model.cls_head)
    assert R == 1 + 2 * 2 * (1 + 2 + 4)  # 2 stages, 3 layers, kernel 3
    for i, t in enumerate(full.times):
        a = full.context_start[i]
        assert a == max(0, t - R + 1)
        for m, mat in full.importance.items():
            assert np.all(mat[i, t + 1:] == 0), m  # causality
            assert np.all(mat[i, :a] == 0), m      # receptive field
            assert np.abs(mat[i, a:t + 1]).max() > 0, m


def test_receptive_field_context_is_the_whole_sequence(full, model):
    """The head on frames t-R+1..t gives its output at t on the whole
    sequence 0..T-1 (t = 35, 39: the context starts after 0)."""
    seq = torch.from_numpy(full.cache.read(0, 40))
    with torch.no_grad():
        whole = model.cls_head.sequence_logits(seq[None])[-1][0]
    for r in full.records:
        t, c = r['grid_frame'], r['target']
        assert r['score'] == pytest.approx(float(whole[c, t]), abs=1e-4)
        assert full.pred[t] == int(whole[:, t].argmax())
    assert full.context_start.tolist()[-2:] == [7, 11]


def test_equals_the_per_window_feature_sequence_path(model, procedure):
    """context=8 (the model's window) against FeatureSequence on the
    window the toolbox's dataset serves (its own decode and pipeline)."""
    from mmxai.datasets.phase_dataset import Cholec80Dataset
    from mmengine import Config
    cfg = Config.fromfile(CONFIG)
    ds = Cholec80Dataset(data_root=procedure['root'], videos='1',
                         sample_fps=1.0, clip_len=8, label_at='last',
                         stride=1, pipeline=cfg.window_pipeline,
                         test_mode=True)
    res = run(model, procedure['video'], times=['20s', '33s'], context=8,
              methods=['occlusion', 'ig'], ig_steps=16)
    for i, t in enumerate(res.times):
        k = next(j for j in range(len(ds))
                 if ds.get_data_info(j)['frame_inds'][-1] == t * 5)
        item = ds[k]
        data = model.data_preprocessor(
            dict(inputs=[item['inputs']], data_samples=[
                item['data_samples']]), False)
        fs = FeatureSequence(model, data['inputs'])
        c = int(res.targets[i])
        occ = feature_occlusion(fs, 7, c).numpy()
        ig = feature_integrated_gradients(fs, 7, c, steps=16).numpy()
        a = res.context_start[i]
        assert a == t - 7
        np.testing.assert_allclose(res.importance['occlusion'][i, a:t + 1],
                                   occ, atol=2e-4)
        np.testing.assert_allclose(res.importance['ig'][i, a:t + 1], ig,
                                   atol=2e-4)
        # and the window prediction is the model's own on that window
        with torch.no_grad():
            p = model(data['inputs'], data['data_samples'],
                      mode='predict')[0].pred_score
        np.testing.assert_allclose(res.probs[t], p.numpy(), atol=1e-4)


def test_outputs(full):
    out = full.out
    names = sorted(os.listdir(out))
    assert names == ['.mmxai-long.lock', 'features', 'importance.csv',
                     'importance.npz', 'importance.png', 'sequence.json']
    z = np.load(osp.join(out, 'importance.npz'))
    for m in ('occlusion', 'ig', 'shapley'):
        assert z[f'importance_{m}'].shape == (4, 40)
        np.testing.assert_array_equal(z[f'importance_{m}'],
                                      full.importance[m])
    assert z['times'].tolist() == [5, 25, 35, 39]
    assert z['gt'].shape == (40, ) and (z['gt'] >= 0).all()
    rec = json.load(open(osp.join(out, 'sequence.json')))
    assert rec['kind'] == 'phase_sequence' and len(rec['times']) == 4
    assert rec['accuracy'] == pytest.approx(full.accuracy)
    rows = list(csv.DictReader(open(osp.join(out, 'importance.csv'))))
    assert len(rows) == 3 * sum(t - a + 1 for t, a in zip(
        full.times, full.context_start))
    r = next(r for r in rows if r['method'] == 'ig' and r['grid_frame'] ==
             '39' and r['source_grid_frame'] == '30')
    assert float(r['importance']) == pytest.approx(
        float(full.importance['ig'][3, 30]), rel=1e-4, abs=1e-7)


def test_transitions_and_every(model, procedure):
    res = run(model, procedure['video'], times='transitions',
              methods=['occlusion'])
    want = (np.flatnonzero(np.diff(res.pred)) + 1).tolist()
    assert res.times.tolist() == want
    res = run(model, procedure['video'], times='every:10s',
              methods=['occlusion'])
    assert res.times.tolist() == [10, 20, 30]


def test_bad_input(model, procedure):
    from tiny_models import build, tsn_cfg
    tsn = build(tsn_cfg())
    tsn.cfg = model.cfg
    with pytest.raises(UnsupportedModelError, match='CausalMSTCNHead'):
        run(tsn, procedure['video'], times=['5s'])
    with pytest.raises(InputError, match='outside the video'):
        run(model, procedure['video'], times=['45s'])
    with pytest.raises(InputError, match='sequence methods'):
        run(model, procedure['video'], times=['5s'], methods=['gradcam'])
    with pytest.raises(InputError, match='context'):
        run(model, procedure['video'], times=['5s'], context='all')


def test_cli(model, procedure, tmp_path, capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import explain as cli
    from tiny_models import write_checkpoint
    ckpt = write_checkpoint(tmp_path / 'm.pth', model)
    out = tmp_path / 'cli'
    code = cli.main([CONFIG, ckpt, procedure['video'], '--sequence',
                     '--times', '30s', '--sequence-methods', 'occlusion',
                     '--out-dir', str(out), '--no-progress', '--outputs',
                     'json', 'csv'])
    err = capsys.readouterr()
    assert code == 0, err.err
    assert 'phase sequence: 1 times explained' in err.out
    assert sorted(os.listdir(out)) == ['.mmxai-long.lock', 'features',
                                       'importance.csv', 'sequence.json']
    tsn = osp.join(ROOT, 'configs/surgical/resnet50_frames_cholec80.py')
    code = cli.main([tsn, ckpt, procedure['video'], '--sequence',
                     '--times', '30s'])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count('\n') == 1 and err.startswith('error: ') and \
        'CausalMSTCNHead' in err and 'TSNHead' in err
    code = cli.main([CONFIG, ckpt, procedure['video'], '--sequence',
                     '--times', 'soon'])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith('error: --times') and \
        err.count('\n') == 1


def test_shapley_sampled_mode_agrees_with_exact(full, model):
    """Permutation sampling (efficiency exact) converges to the exact
    values of the same 8-player game."""
    from mmxai.explainers.sequence_attribution import (context_baseline,
                                                       context_shapley)
    seq = torch.from_numpy(full.cache.read(0, 40))
    ctx = seq[:, 11:36]
    base = context_baseline(ctx)
    exact = context_shapley(model.cls_head, ctx, 3, base, players=8)
    sampled = context_shapley(model.cls_head, ctx, 3, base, players=8,
                              max_exact=0, num_samples=400, seed=1)
    assert exact['exact'] and not sampled['exact']
    for r in (exact, sampled):
        assert float(r['player_values'].sum()) == pytest.approx(
            r['v_all'] - r['v_empty'], abs=1e-9)
        assert float(r['values'].sum()) == pytest.approx(
            r['v_all'] - r['v_empty'], abs=1e-9)
    err = (sampled['player_values'] - exact['player_values']).abs().max()
    assert float(err) < 0.1 * float(exact['player_values'].abs().max())


def test_cams_on_the_top_frames(model, procedure):
    res = run(model, procedure['video'], times=['33s'], context=8,
              methods=['occlusion'], cams=2)
    (maps, ) = res.cams
    assert [m[0] for m in maps] == res.top_frames(0, 'occlusion', 2).tolist()
    for s, frame, cam, value in maps:
        assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
        assert cam.shape == (64, 64) and cam.min() >= 0 and cam.max() == 1
        assert value == res.importance['occlusion'][0, s]


def test_feature_cache_chunks(tmp_path):
    from mmxai.apis.feature_cache import FeatureCache
    key = dict(video='a', weights='w')
    c = FeatureCache(str(tmp_path), key, num_frames=10, chunk=4)
    x = np.arange(30, dtype=np.float32).reshape(10, 3)
    assert c.missing(0, 6).tolist() == list(range(6))
    c.add(range(0, 6), x[:6])
    c.flush()  # chunk 1 holds 2 of its 4 frames
    c = FeatureCache(str(tmp_path), key, num_frames=10, chunk=4)
    assert c.missing(0, 10).tolist() == [6, 7, 8, 9]
    assert c.missing(5, 6).tolist() == []
    with pytest.raises(OutputError, match='not all computed'):
        c.read(0, 8)
    with pytest.raises(ValueError, match='continues at grid frame 6'):
        c.add([7], x[7:8])
    c.add(range(6, 10), x[6:])
    np.testing.assert_array_equal(c.read(0, 10), x.T)
    np.testing.assert_array_equal(c.read(3, 7), x[3:7].T)
    with pytest.raises(OutputError, match='video differs'):
        FeatureCache(str(tmp_path), dict(key, video='b'), 10, chunk=4)
    with pytest.raises(OutputError, match='chunk differs'):
        FeatureCache(str(tmp_path), key, 10, chunk=5)
    c = FeatureCache(str(tmp_path), dict(key, video='b'), 10, chunk=4,
                     refresh=True)
    assert c.missing().tolist() == list(range(10))
    assert sorted(os.listdir(tmp_path)) == ['meta.json']
