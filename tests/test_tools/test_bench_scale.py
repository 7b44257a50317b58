"""The scale benchmark's table: its nine configs exist, ``--num-clips``
reaches the test pipeline, records of several runs merge into one table
whose ratios are computed against the toolbox's row of the same model."""
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))
import bench_scale as bs  # noqa: E402


def test_the_nine_models_are_toolbox_configs():
    from mmxai.preflight import resolve_config_path
    assert len(bs.MODELS) == 9
    for config in bs.MODELS.values():
        assert osp.isfile(resolve_config_path(config)), config


def test_num_clips_sets_the_test_pipeline():
    cfg = bs.load_config(bs.MODELS['I3D-R50'], num_clips=20)
    steps = [s for s in cfg.test_dataloader.dataset.pipeline
             if s['type'] == 'SampleFrames']
    assert steps and all(s['num_clips'] == 20 for s in steps)
    default = bs.load_config(bs.MODELS['I3D-R50'])
    assert [s['num_clips'] for s in default.test_dataloader.dataset.pipeline
            if s['type'] == 'SampleFrames'] == [10]


def _write(path, records):
    with open(path, 'w') as f:
        for rec in records:
            f.write(json.dumps(rec) + '\n')


def test_records_merge_into_one_table(tmp_path):
    first = dict(model='M', num_clips=None, rows={
        'toolbox inference': dict(seconds=10.0, peak_rss_gb=2.0, views=4,
                                  load_average='1 1 1')})
    second = dict(model='M', num_clips=None, rows={
        'gradcam': dict(seconds=20.0, peak_rss_gb=3.0, views=4,
                        memory_plan=dict(views_per_pass=2)),
        'saliency_tubes': dict(error='UnsupportedModelError: no', returncode=1)})
    other = dict(model='M', num_clips=1, rows={
        'gradcam': dict(seconds=1.0, peak_rss_gb=1.0, views=1)})
    a, b = tmp_path / 'a.jsonl', tmp_path / 'b.jsonl'
    _write(a, [second, other])
    _write(b, [first])
    records = bs.merge_records([str(a), str(b)])
    assert [(r['model'], r['num_clips']) for r in records] == [
        ('M', None), ('M', 1)]
    assert list(records[0]['rows'])[0] == 'toolbox inference'
    lines = bs.markdown_table(records).splitlines()
    row = next(ln for ln in lines if '| gradcam |' in ln and '| 4 |' in ln)
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert cells[3:8] == ['3.00 GB', '20.0 s', '5.00 s', '1.50x', '2']
    assert any('failed: `UnsupportedModelError: no`' in ln for ln in lines)
    lone = next(ln for ln in lines if '| 1 |' in ln)
    assert '| - |' in lone  # no toolbox row at 1 clip: no ratio


def test_a_stopped_case_keeps_the_peak_it_reached():
    # a real child that holds ~200 MB and sleeps past the timeout
    code = ('import time; b = bytearray(200 * 2**20); '
            'b[::4096] = b"x" * len(b[::4096]); time.sleep(30)')
    res = bs.run_sampled([sys.executable, '-c', code], timeout=1.5, every=0.2)
    assert res.timed_out and res.returncode != 0
    assert res.vmhwm_gb is not None and res.vmhwm_gb >= 0.19
    done = bs.run_sampled([sys.executable, '-c', 'print(42)'], timeout=30)
    assert not done.timed_out and done.returncode == 0
    assert done.stdout.strip() == '42'


def test_a_stopped_row_shows_its_lower_bound():
    rec = dict(model='M', num_clips=None, rows={
        'toolbox inference': dict(seconds=1.0, peak_rss_gb=2.0, views=2),
        'rise': dict(error='not finished in 60 s', returncode=None,
                     vmhwm_gb=2.5, last_progress='3/10 elapsed')})
    row = next(ln for ln in bs.markdown_table([rec]).splitlines()
               if '| rise |' in ln)
    assert '>= 2.50 GiB' in row and '>= 1.25x' in row and '3/10' in row
