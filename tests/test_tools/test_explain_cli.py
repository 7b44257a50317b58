"""tools/explain.py and mmxai.apis.explain_video end to end, and bad input."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from mmxai.apis import explain_video, init_recognizer
from tiny_models import (build, i3d_cfg, tsm_cfg, write_checkpoint,
                         write_config, write_video_file)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import explain as cli  # noqa: E402


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('cli')
    model = build(i3d_cfg())
    return dict(
        dir=d,
        config=write_config(d / 'cfg.py'),
        ckpt=write_checkpoint(d / 'model.pth', model),
        video=write_video_file(d / 'clip.mp4'),
    )


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_writes_every_output(files, capsys, tmp_path):
    out = tmp_path / 'out'
    code, stdout, err = run_cli(capsys, files['config'], files['ckpt'],
                                files['video'], '--out-dir', out, '--gif',
                                '--method', 'gradcam++')
    assert code == 0, err
    names = sorted(os.listdir(out))
    assert names == ['explanation.json', 'maps.npz', 'montage.png',
                     'overlay.gif', 'overlay.mp4', 'temporal_importance.png']
    rec = json.load(open(out / 'explanation.json'))
    assert rec['method'] == 'gradcam++'
    assert rec['map_shape'] == [1, 1, 8, 32, 32]
    assert len(rec['top5']) == 5 and rec['target']['label'] in 'abcde'
    assert rec['frame_inds'] == sorted(rec['frame_inds'])
    assert rec['run_time_s'] > 0
    arrays = np.load(out / 'maps.npz')
    assert 'maps' not in arrays.files  # per-view maps only on request
    # mapped back onto the 40x56 original frames, centre-crop region valid
    assert arrays['original_maps'].shape == (8, 40, 56)
    valid = arrays['original_valid']
    assert valid[:, :, :3].sum() == 0 and valid[:, 20, 28].all()
    import decord
    assert len(decord.VideoReader(str(out / 'overlay.mp4'))) == 8


def test_api_explain_video_matches_cli_maps(files, tmp_path):
    model = init_recognizer(files['config'], files['ckpt'])
    res = explain_video(model, files['video'], method='saliency_tubes',
                        out_dir=str(tmp_path / 'api'),
                        outputs=('npz', 'json'))
    assert res.explanation.maps.shape == (1, 1, 8, 32, 32)
    assert sorted(res.files) == ['json', 'npz']
    assert res.explanation.method == 'saliency_tubes'
    assert not model.training


def test_multiview_pipeline_maps_every_view_back(files, tmp_path):
    from tiny_models import TEST_PIPELINE_3D
    pipeline = [dict(t) for t in TEST_PIPELINE_3D]
    pipeline[1] = dict(pipeline[1], num_clips=2)
    pipeline[3] = dict(type='Resize', scale=(-1, 32))
    pipeline[4] = dict(type='ThreeCrop', crop_size=32)
    cfg = write_config(tmp_path / 'mv.py', test_pipeline=pipeline)
    model = init_recognizer(cfg, files['ckpt'])
    res = explain_video(model, files['video'], out_dir=str(tmp_path / 'o'),
                        outputs=('npz', ))
    assert res.explanation.maps.shape == (1, 6, 8, 32, 32)
    crops = res.sample.crops
    assert len(crops) == 3
    assert crops[0].box[0] == 0 and crops[2].box[2] == pytest.approx(56, 1)
    arrays = np.load(tmp_path / 'o' / 'maps.npz')
    # three crops cover the frame (ThreeCrop leaves the last resized column)
    assert arrays['original_valid'][:, :, :-2].all()
    assert arrays['original_maps'].shape[0] == 16  # 2 clips x 8 frames


def test_tsm_video(tmp_path):
    model = build(tsm_cfg(num_segments=4))
    pipeline = [
        dict(type='DecordInit'),
        dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=4,
             test_mode=True, twice_sample=True),
        dict(type='DecordDecode'), dict(type='Resize', scale=(-1, 32)),
        dict(type='CenterCrop', crop_size=32),
        dict(type='FormatShape', input_format='NCHW'),
        dict(type='PackActionInputs')]
    cfg = write_config(tmp_path / 'tsm.py', tsm_cfg(num_segments=4), pipeline)
    ckpt = write_checkpoint(tmp_path / 'tsm.pth', model)
    video = write_video_file(tmp_path / 'v.mp4')
    res = explain_video(init_recognizer(cfg, ckpt), video,
                        out_dir=str(tmp_path / 'o'), outputs=('npz', 'json'))
    # twice_sample: 2 views of 4 segments, regrouped in time
    assert res.explanation.maps.shape == (1, 2, 4, 32, 32)


def assert_one_line_error(code, err, pattern, out_dir=None):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    assert pattern in lines[0], lines[0]
    if out_dir is not None:
        assert not osp.exists(out_dir) or os.listdir(out_dir) == []


def test_missing_video(files, capsys, tmp_path):
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           tmp_path / 'nope.mp4', '--out-dir', out)
    assert_one_line_error(code, err, 'video not found', out)


def test_corrupt_video(files, capsys, tmp_path):
    bad = tmp_path / 'bad.mp4'
    bad.write_bytes(b'\x00\x01not a video' * 100)
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'], bad,
                           '--out-dir', out)
    assert_one_line_error(code, err, 'cannot read video', out)


def test_config_without_test_pipeline(files, capsys, tmp_path):
    from mmengine.config import Config
    cfg = tmp_path / 'nopipe.py'
    Config(dict(model=i3d_cfg())).dump(str(cfg))
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, cfg, files['ckpt'], files['video'],
                           '--out-dir', out)
    assert_one_line_error(code, err, 'no test pipeline', out)


def test_missing_config_and_checkpoint(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, tmp_path / 'none.py', files['ckpt'],
                           files['video'], '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, 'not found')
    code, _, err = run_cli(capsys, files['config'], tmp_path / 'none.pth',
                           files['video'], '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, 'not found', tmp_path / 'o')


def test_unknown_layer_suggests(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--target-layers',
                           'backbone.layer9', '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, 'did you mean', tmp_path / 'o')
    assert 'backbone.layer4' in err


def test_class_out_of_range(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--target', '7', '--out-dir',
                           tmp_path / 'o')
    assert_one_line_error(code, err, 'out of range', tmp_path / 'o')


def test_gt_target_without_label(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--target', 'gt', '--out-dir',
                           tmp_path / 'o')
    assert_one_line_error(code, err, 'ground-truth', tmp_path / 'o')
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--target', 'gt', '--label', '3',
                           '--out-dir', tmp_path / 'o', '--outputs', 'json')
    assert code == 0, err
    rec = json.load(open(tmp_path / 'o' / 'explanation.json'))
    assert rec['target']['class'] == 3


def test_unsupported_method_for_head(files, capsys, tmp_path):
    cfg = i3d_cfg()
    cfg['cls_head'] = dict(type='X3DHead', num_classes=5, in_channels=32)
    config = write_config(tmp_path / 'x3dhead.py', cfg)
    ckpt = write_checkpoint(tmp_path / 'x.pth', build(cfg))
    code, _, err = run_cli(capsys, config, ckpt, files['video'], '--method',
                           'saliency_tubes', '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, 'Saliency Tubes', tmp_path / 'o')


def test_unknown_method(files, capsys, tmp_path):
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--method', 'magic',
                           '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, 'available', tmp_path / 'o')


class Payload:
    def __reduce__(self):
        return (os.system, ('touch /tmp/mmxai_pwned_cli',))


def test_untrusted_checkpoint_refused(files, capsys, tmp_path):
    ckpt = tmp_path / 'evil.pth'
    sd = build(i3d_cfg()).state_dict()
    torch.save({'state_dict': sd, 'meta': {'x': Payload()}}, str(ckpt))
    if osp.exists('/tmp/mmxai_pwned_cli'):
        os.remove('/tmp/mmxai_pwned_cli')
    code, _, err = run_cli(capsys, files['config'], ckpt, files['video'],
                           '--out-dir', tmp_path / 'o')
    assert_one_line_error(code, err, '--trust-checkpoint', tmp_path / 'o')
    assert 'system' in err
    assert not osp.exists('/tmp/mmxai_pwned_cli')


def test_unwritable_output_folder(files, capsys, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--out-dir', blocker / 'sub')
    assert_one_line_error(code, err, 'not a folder')
    if os.geteuid() != 0:  # root ignores permissions
        ro = tmp_path / 'ro'
        ro.mkdir()
        ro.chmod(0o500)
        code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                               files['video'], '--out-dir', ro / 'x')
        assert_one_line_error(code, err, 'not writable')


def test_failure_while_writing_leaves_nothing(files, tmp_path, monkeypatch):
    from mmxai import visualization
    from mmxai.errors import OutputError

    def boom(*a, **k):
        raise OutputError('disk full')
    monkeypatch.setattr(visualization, 'save_montage', boom)
    model = init_recognizer(files['config'], files['ckpt'])
    out = tmp_path / 'o'
    with pytest.raises(OutputError):
        explain_video(model, files['video'], out_dir=str(out))
    assert os.listdir(out) == []  # staged files removed, none moved in


def test_cli_subprocess_one_line_error(files, tmp_path):
    """The real command line: exit status and a single stderr line."""
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'explain.py'),
         files['config'], files['ckpt'], str(tmp_path / 'missing.mp4')],
        capture_output=True, text=True, cwd=str(tmp_path))
    assert proc.returncode == 2
    err = [l for l in proc.stderr.splitlines() if l.startswith('error')]
    assert err == [f'error: video not found: {tmp_path / "missing.mp4"}']
    assert 'Traceback' not in proc.stderr


def test_cli_cfp_options_and_extra_files(files, capsys, tmp_path):
    out = tmp_path / 'cfp'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--method', 'cfp', '--cfp-theta',
                           '0.7', '--cfp-depth', '1', '--outputs', 'json',
                           '--out-dir', out)
    assert code == 0, err
    assert sorted(os.listdir(out)) == ['cfp_graph.json', 'cfp_pyramid.png',
                                       'explanation.json']
    rec = json.load(open(out / 'explanation.json'))
    assert rec['settings']['theta'] == 0.7 and rec['settings']['depth'] == 1
    assert 'cfp_graph.json' in rec['files']


def test_cli_method_options_reach_the_method(files, capsys, tmp_path):
    out = tmp_path / 'rise'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--method', 'rise',
                           '--method-options', 'num_masks=4', 'seed=3',
                           '--outputs', 'json', '--out-dir', out)
    assert code == 0, err
    rec = json.load(open(out / 'explanation.json'))
    assert rec['settings']['num_masks'] == 4 and rec['settings']['seed'] == 3


def test_cli_refuses_another_models_checkpoint_unless_allowed(files, capsys,
                                                              tmp_path):
    other = write_checkpoint(tmp_path / 'other.pth',
                             build(i3d_cfg(num_classes=7)))
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, files['config'], other, files['video'],
                           '--out-dir', out)
    assert code == 2 and err.startswith('error: checkpoint ')
    assert 'does not fit the model' in err and len(err.splitlines()) == 1
    assert not out.exists()
    code, _, err = run_cli(capsys, files['config'], other, files['video'],
                           '--out-dir', out, '--allow-partial-checkpoint',
                           '--outputs', 'json')
    assert code == 0, err
    rec = json.load(open(out / 'explanation.json'))
    assert 'those weights are random' in rec['settings']['checkpoint_warning']


@pytest.mark.parametrize('argv,text', [
    (['--method-options', 'foo'], "--method-options: 'foo' is not key=value"),
    (['--cfg-options', 'model'], "--cfg-options: 'model' is not key=value"),
    (['--bogus'], 'unrecognized arguments: --bogus'),
])
def test_usage_errors_are_one_line(capsys, argv, text):
    with pytest.raises(SystemExit) as exit_:
        cli.main(['cfg.py', 'ckpt.pth', 'v.mp4'] + argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith('error: ') and text in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize('device,text', [
    ('cuda', 'CUDA is not available here; use --device cpu'),
    ('gpu0', 'is not a device name'),
])
def test_bad_device_one_line(files, capsys, tmp_path, device, text):
    if device == 'cuda' and torch.cuda.is_available():
        pytest.skip('CUDA is available here')
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--out-dir', out, '--device',
                           device)
    assert code == 2 and text in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_label_map_must_match_the_classes(files, capsys, tmp_path):
    labels = tmp_path / 'labels.txt'
    labels.write_text('a\nb\n')  # the model has 5 classes
    out = tmp_path / 'o'
    code, _, err = run_cli(capsys, files['config'], files['ckpt'],
                           files['video'], '--out-dir', out, '--label-map',
                           labels)
    assert code == 2 and 'the label map has 2 names but the model has 5' \
        in err
    assert not out.exists()
