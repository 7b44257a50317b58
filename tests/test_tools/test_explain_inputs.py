"""tools/explain.py before the heavy imports: input errors in one line
without importing torch or the toolbox; SIGTERM; forgotten checkpoint."""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest

from tiny_models import build, i3d_cfg, write_checkpoint, write_config, \
    write_video_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLI = osp.join(ROOT, 'tools', 'explain.py')

#: Runs the CLI's main in this interpreter, then reports whether torch or
#: the toolbox were imported: the checks before them must be enough.
PROBE = """
import runpy, sys
sys.argv = [{cli!r}] + {argv!r}
try:
    runpy.run_path({cli!r}, run_name='__main__')
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in ('torch', 'mmaction', 'mmxai.apis', 'decord')
               if m in sys.modules)
print('HEAVY', heavy, 'CODE', code)
"""


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('inputs')
    text = tmp_path_factory.mktemp('t') / 'fake.mp4'
    text.write_text('\x1b[31mRED\x1b[0m not a video\n')
    bad_yaml = d / 'bad.yaml'
    bad_yaml.write_text('a: [b\n')
    import explain_data
    return dict(dir=d, config=str(write_config(d / 'cfg.py')),
                dataset_config=explain_data.write_config(
                    str(d / 'data_cfg.py'), str(d / 'no_data')),
                ckpt=str(write_checkpoint(d / 'model.pth', build(i3d_cfg()))),
                video=str(write_video_file(d / 'clip.mp4')),
                text=str(text), bad_yaml=str(bad_yaml))


def _probe(argv, cwd):
    proc = subprocess.run(
        [sys.executable, '-c', PROBE.format(cli=CLI, argv=argv)],
        capture_output=True, text=True, cwd=cwd, timeout=120)
    return proc


@pytest.mark.parametrize('case,text', [
    ('no_checkpoint', 'is a video, not a checkpoint (no checkpoint was '
     'given); usage: tools/explain.py CONFIG CHECKPOINT [VIDEO]'),
    ('swapped', 'is a video, not a checkpoint'),
    ('text_video', 'it is a text file, not a video'),
    ('missing_video', 'video not found'),
    ('missing_ckpt', 'checkpoint file not found'),
    ('yaml', 'ParserError'),
    ('cfg_type', "num_classes='abc': expected a number like 5"),
    ('cfg_key', "the config has no 'modle' (did you mean 'model'?)"),
    ('device', 'is not a device name'),
    ('target', 'target class 7 is out of range: the model has 5 classes'),
    ('out_file', 'is a file; choose another --out-dir'),
    ('no_ann', 'annotation file not found'),
    ('method', "unknown method 'gradcm' (did you mean 'gradcam'?)"),
])
def test_input_errors_before_heavy_imports(files, tmp_path, case, text):
    c, k, v = files['config'], files['ckpt'], files['video']
    out = str(tmp_path / 'o')
    argv = {
        'no_checkpoint': [c, v],
        'swapped': [c, v, k],
        'text_video': [c, k, files['text']],
        'missing_video': [c, k, str(tmp_path / 'nope.mp4')],
        'missing_ckpt': [c, str(tmp_path / 'nope.pth'), v],
        'yaml': [files['bad_yaml'], k, v],
        'cfg_type': [c, k, v, '--cfg-options',
                     'model.cls_head.num_classes=abc'],
        'cfg_key': [c, k, v, '--cfg-options', 'modle.x=1'],
        'device': [c, k, v, '--device', 'gpu0'],
        'target': [c, k, v, '--target', '7'],
        'out_file': [c, k, v, '--out-dir', files['config']],
        'no_ann': [files['dataset_config'], k],
        'method': [c, k, v, '--method', 'gradcm'],
    }[case]
    if '--out-dir' not in argv:
        argv += ['--out-dir', out]
    proc = _probe(argv, str(tmp_path))
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), proc.stderr
    assert text in lines[0], lines[0]
    assert 'HEAVY [] CODE 2' in proc.stdout, proc.stdout
    assert '\x1b' not in proc.stderr
    assert not osp.exists(out)


def test_config_without_dataloader_for_a_dataset_run(files, tmp_path):
    proc = _probe([files['config'], files['ckpt'], '--out-dir',
                   str(tmp_path / 'o')], str(tmp_path))
    assert 'error: config has no test_dataloader' in proc.stderr


def test_sigterm_is_cleaned_up_like_ctrl_c(files, tmp_path):
    out = tmp_path / 'o'
    proc = subprocess.Popen(
        [sys.executable, CLI, files['config'], files['ckpt'], files['video'],
         '--out-dir', str(out), '--method', 'rise', '--method-options',
         'num_masks=100000'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=str(tmp_path))
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)  # until the run is under way (or 60 s)
        if out.exists() or time.time() > deadline - 50:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == \
        'terminated: nothing half-written was kept'
    assert 'Traceback' not in err
    left = [] if not out.exists() else os.listdir(out)
    assert left == [], left
