"""Safe checkpoint loading: real MMEngine checkpoints load weights-only,
code-carrying pickles are refused unless trusted, URLs take the same path."""
import functools
import http.server
import os
import os.path as osp
import pickle
import threading

import mmengine
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from torch.utils.data import DataLoader, Dataset

import tiny_models
from mmaction.structures import ActionDataSample
from mmxai.apis.model import init_recognizer, resolve_config_path
from mmxai.checkpoint import SAFE_GLOBALS, load_checkpoint, load_checkpoint_file
from mmxai.errors import (CheckpointMismatchError, InputError,
                          UntrustedCheckpointError)

NUM_CLASSES = 3
CLASSES = ('wave', 'jump', 'run')


def model_cfg() -> dict:
    return tiny_models.i3d_cfg(num_classes=NUM_CLASSES, base_channels=4)


class _Clips(Dataset):
    """Four random 8x32x32 clips; ``metainfo`` ends up in the checkpoint."""
    metainfo = dict(classes=CLASSES)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        clip = torch.randint(0, 256, (1, 3, 8, 32, 32), generator=g,
                             dtype=torch.uint8)
        return dict(inputs=clip,
                    data_samples=ActionDataSample().set_gt_label(i % 3))


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A checkpoint written by MMEngine's Runner after 2 training iters."""
    work_dir = str(tmp_path_factory.mktemp('runner'))
    runner = Runner(
        model=model_cfg(), work_dir=work_dir,
        train_dataloader=DataLoader(_Clips(), batch_size=2,
                                    collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=2, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1,
                                          momentum=0.9)),
        param_scheduler=[dict(type='MultiStepLR', by_epoch=False,
                              milestones=[1])],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                           interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0), default_scope='mmaction')
    runner.train()
    path = osp.join(work_dir, 'iter_2.pth')
    weights = {k: v.detach().clone()
               for k, v in runner.model.state_dict().items()}
    return path, weights


def fresh_model(seed=123):
    return tiny_models.build(model_cfg(), seed=seed)


def assert_weights(model, weights):
    state = model.state_dict()
    assert set(state) == set(weights)
    for k, v in weights.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0, msg=k)


# Payloads: each writes a marker file when unpickled (harmless, visible).
def _touch(path):
    with open(path, 'w') as f:
        f.write('ran')


class TouchOnLoad:
    """A custom class whose unpickling runs code (writes ``marker``)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (_touch, (self.marker, ))


class ShellOnLoad:
    """The classic payload: ``os.system`` at unpickling time."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"printf ran > '{self.marker}'", ))


class GetattrOnLoad:
    """Abuse of the HistoryBuffer ``getattr`` allowance."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


def malicious_ckpt(path, payload, weights):
    torch.save(dict(state_dict=weights, meta=dict(note=payload)), path)
    return str(path)


# ---------------------------------------------------------------- real files
def test_runner_checkpoint_needs_allowlist_and_loads_safely(runner_ckpt):
    path, weights = runner_ckpt
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    # What makes plain torch.load(weights_only=True) fail on real files.
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert any(n.startswith('numpy.') for n in needed)
    assert 'builtins.getattr' in needed
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    names = {n for _, n in SAFE_GLOBALS}
    assert needed <= names

    stats_before = dict(HistoryBuffer._statistics_methods)
    model = fresh_model()
    ckpt = load_checkpoint(model, path)
    assert_weights(model, weights)
    assert model.dataset_meta['classes'] == CLASSES
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    assert ckpt['meta']['iter'] == 2
    assert HistoryBuffer._statistics_methods == stats_before


def test_save_checkpoint_with_numpy_meta(tmp_path):
    np = pytest.importorskip('numpy')
    model = fresh_model(seed=5)
    hub = HistoryBuffer()
    hub.update(np.float64(0.5))
    meta = dict(seed=np.int64(7), best_score=np.float64(0.875),
                hist=np.arange(4, dtype=np.float32), CLASSES=CLASSES,
                mmcv_version='1.7.0', config='model = dict()')
    path = str(tmp_path / 'np_meta.pth')
    mmengine.runner.save_checkpoint(
        dict(state_dict=model.state_dict(), meta=meta,
             message_hub=dict(log_scalars=dict(loss=hub))), path)
    ckpt = load_checkpoint_file(path)
    assert ckpt['meta']['best_score'] == 0.875
    assert ckpt['meta']['seed'].dtype == np.int64
    assert ckpt['meta']['hist'].tolist() == [0, 1, 2, 3]
    assert ckpt['message_hub']['log_scalars']['loss'].mean() == 0.5
    other = fresh_model(seed=6)
    load_checkpoint(other, path)
    assert_weights(other, model.state_dict())


def test_bare_state_dict_and_module_prefix(tmp_path):
    src = fresh_model(seed=1)
    bare = str(tmp_path / 'bare.pth')
    torch.save(src.state_dict(), bare)
    dst = fresh_model(seed=2)
    ckpt = load_checkpoint(dst, bare)
    assert_weights(dst, src.state_dict())
    assert 'state_dict' not in ckpt

    wrapped = str(tmp_path / 'ddp.pth')
    torch.save(dict(state_dict={f'module.{k}': v
                                for k, v in src.state_dict().items()}),
               wrapped)
    dst = fresh_model(seed=3)
    load_checkpoint(dst, wrapped)
    assert_weights(dst, src.state_dict())


# ---------------------------------------------------------------- malicious
@pytest.mark.parametrize('payload_cls,type_name', [
    (TouchOnLoad, 'test_checkpoint._touch'),
    (ShellOnLoad, 'system'),
])
def test_malicious_refused_unless_trusted(tmp_path, payload_cls, type_name):
    marker = tmp_path / 'pwned'
    src = fresh_model(seed=1)
    path = malicious_ckpt(tmp_path / 'evil.pth', payload_cls(str(marker)),
                          src.state_dict())
    model = fresh_model(seed=2)
    with pytest.raises(UntrustedCheckpointError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert type_name in msg and 'trust_checkpoint=True' in msg
    assert '--trust-checkpoint' in msg and '\n' not in msg
    assert not marker.exists()

    load_checkpoint(model, path, trust_checkpoint=True)
    assert marker.read_text() == 'ran'
    assert_weights(model, src.state_dict())


def test_getattr_allowance_is_restricted(tmp_path):
    path = malicious_ckpt(tmp_path / 'getattr.pth', GetattrOnLoad(),
                          fresh_model().state_dict())
    with pytest.raises(UntrustedCheckpointError, match='HistoryBuffer'):
        load_checkpoint_file(path)


# ---------------------------------------------------------------- bad files
def test_missing_and_corrupt_files(tmp_path, runner_ckpt):
    with pytest.raises(InputError, match='not found'):
        load_checkpoint_file(str(tmp_path / 'nope.pth'))
    junk = tmp_path / 'junk.pth'
    junk.write_bytes(os.urandom(64).replace(b'\x80', b'\x00') + b'\x80')
    with pytest.raises(InputError, match='not a PyTorch checkpoint'):
        load_checkpoint_file(str(junk))
    data = open(runner_ckpt[0], 'rb').read()
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(data[:len(data) // 2])
    for trust in (False, True):
        with pytest.raises(InputError, match='not a PyTorch checkpoint'):
            load_checkpoint_file(str(truncated), trust_checkpoint=trust)
    legacy_cut = tmp_path / 'legacy_cut.pth'
    torch.save({'w': torch.ones(3)}, str(legacy_cut),
               _use_new_zipfile_serialization=False)
    legacy_cut.write_bytes(legacy_cut.read_bytes()[:40])
    with pytest.raises(InputError):
        load_checkpoint_file(str(legacy_cut))


def test_legacy_format_loads(tmp_path):
    src = fresh_model(seed=4)
    path = str(tmp_path / 'legacy.pth')
    torch.save(dict(state_dict=src.state_dict(), meta=dict(epoch=3)), path,
               _use_new_zipfile_serialization=False)
    dst = fresh_model(seed=5)
    load_checkpoint(dst, path)
    assert_weights(dst, src.state_dict())


def test_numpy1_era_names_load(tmp_path):
    """Model-zoo files pickled under numpy 1.x name `numpy.core.*`."""
    np = pytest.importorskip('numpy')
    src = fresh_model(seed=7)
    path = tmp_path / 'np1.pth'
    torch.save(dict(state_dict=src.state_dict(),
                    meta=dict(best=np.float64(0.25), arr=np.ones(2))),
               str(path), _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    if b'numpy._core.multiarray' in data:  # written by numpy 2
        data = data.replace(b'numpy._core.multiarray',
                            b'numpy.core.multiarray')
        path.write_bytes(data)
    assert b'numpy.core.multiarray' in data
    ckpt = load_checkpoint_file(str(path))
    assert ckpt['meta']['best'] == 0.25 and ckpt['meta']['arr'].sum() == 2


# ---------------------------------------------------------------- URLs
@pytest.fixture
def http_dir(tmp_path, monkeypatch):
    root = tmp_path / 'www'
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    cache = tmp_path / 'cache'
    monkeypatch.setenv('MMXAI_CACHE', str(cache))
    yield root, f'http://127.0.0.1:{server.server_address[1]}', cache
    server.shutdown()
    server.server_close()


def test_url_goes_through_safe_path(http_dir, runner_ckpt):
    root, base, cache = http_dir
    path, weights = runner_ckpt
    (root / 'zoo.pth').write_bytes(open(path, 'rb').read())
    model = fresh_model()
    load_checkpoint(model, f'{base}/zoo.pth')
    assert_weights(model, weights)
    cached = [f for _, _, fs in os.walk(cache) for f in fs]
    assert cached == ['zoo.pth']

    marker = root.parent / 'pwned_url'
    malicious_ckpt(root / 'evil.pth', TouchOnLoad(str(marker)), weights)
    with pytest.raises(UntrustedCheckpointError, match='_touch'):
        load_checkpoint(fresh_model(), f'{base}/evil.pth')
    assert not marker.exists()

    with pytest.raises(InputError, match='cannot download'):
        load_checkpoint_file(f'{base}/missing.pth')


# ---------------------------------------------------------------- init API
def test_init_recognizer_from_path(tmp_path, runner_ckpt):
    path, weights = runner_ckpt
    cfg_file = str(tmp_path / 'tiny_i3d.py')
    mmengine.Config(dict(model=model_cfg(),
                         default_scope='mmaction')).dump(cfg_file)
    model = init_recognizer(cfg_file, path)
    assert not model.training
    assert model.cfg.model.type == 'Recognizer3D'
    assert model.dataset_meta['classes'] == CLASSES
    assert_weights(model, weights)

    with pytest.raises(InputError, match='not found'):
        init_recognizer(str(tmp_path / 'missing.py'))


def test_init_recognizer_mmaction_name_builds_without_downloads():
    name = ('mmaction::recognition/tsn/'
            'tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb.py')
    assert osp.isfile(resolve_config_path(name))
    cfg = mmengine.Config.fromfile(resolve_config_path(name))
    assert cfg.model.backbone.pretrained.startswith('https://')
    model = init_recognizer(
        name, cfg_options={'model.backbone.depth': 18,
                           'model.cls_head.in_channels': 512})
    assert type(model).__name__ == 'Recognizer2D'
    assert model.backbone.depth == 18 and model.backbone.pretrained is None
    assert model.cfg.model.backbone.pretrained is None
    with pytest.raises(InputError, match='not found'):
        resolve_config_path('mmaction::recognition/nope.py')


def test_strip_pretrained_init_cfg():
    from mmxai.apis.model import strip_pretrained
    cfg = dict(backbone=dict(
        pretrained='torchvision://resnet50',
        init_cfg=[dict(type='Pretrained', checkpoint='x.pth'),
                  dict(type='Kaiming', layer='Conv3d')],
        sub=dict(init_cfg=dict(type='Pretrained', checkpoint='y.pth'),
                 pretrained=True)))
    strip_pretrained(cfg)
    assert cfg == dict(backbone=dict(
        pretrained=None, init_cfg=[dict(type='Kaiming', layer='Conv3d')],
        sub=dict(pretrained=False)))


# ------------------------------------------------- mismatched checkpoints
def test_checkpoint_of_another_model_refused_unless_allowed(runner_ckpt):
    """3-class weights into a 4-class model: refused with a summary, the
    model untouched; allowed, the rest loads and the warning is kept."""
    path, weights = runner_ckpt
    model = tiny_models.build(tiny_models.i3d_cfg(num_classes=4,
                                                  base_channels=4), seed=5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(model, path)
    msg = str(err.value)
    assert 'does not fit the model' in msg and '\n' not in msg
    assert 'cls_head.fc_cls.weight: [3, 32] in the file, [4, 32]' in msg
    assert '--allow-partial-checkpoint' in msg
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not hasattr(model, 'mmxai_checkpoint_warning')

    load_checkpoint(model, path, allow_partial=True)
    state = model.state_dict()
    for k, v in weights.items():
        if k.startswith('cls_head.fc_cls'):
            assert torch.equal(state[k], before[k]), k  # kept random
        else:
            assert torch.equal(state[k], v), k
    assert 'those weights are random' in model.mmxai_checkpoint_warning
    assert '2 of another shape' in model.mmxai_checkpoint_warning


def test_missing_keys_refused(tmp_path, runner_ckpt):
    path, weights = runner_ckpt
    cut = {k: v for k, v in weights.items() if not k.startswith('backbone.layer1')}
    torch.save(dict(state_dict=cut), tmp_path / 'cut.pth')
    with pytest.raises(CheckpointMismatchError, match="weights missing \\(backbone.layer1"):
        load_checkpoint(fresh_model(), str(tmp_path / 'cut.pth'))


# ------------------------------------------ the toolbox's own tools
def test_toolbox_loader_is_mmxais_safe_loader(tmp_path, runner_ckpt,
                                              monkeypatch):
    """After ``import mmxai`` MMEngine's CheckpointLoader (Runner.load_checkpoint,
    load_from, resume, tools/test.py) loads Runner-saved files weights-only
    and refuses code, naming the opt-in."""
    from mmengine.runner.checkpoint import CheckpointLoader
    from mmxai.checkpoint import TRUST_ENV
    path, weights = runner_ckpt
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert isinstance(ckpt['message_hub']['log_scalars']['train/loss'],
                      HistoryBuffer)
    marker = tmp_path / 'pwned'
    evil = malicious_ckpt(tmp_path / 'evil.pth', TouchOnLoad(str(marker)),
                          weights)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    with pytest.raises(UntrustedCheckpointError, match=f'{TRUST_ENV}=1'):
        CheckpointLoader.load_checkpoint(evil)
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, '1')
    CheckpointLoader.load_checkpoint(evil)
    assert marker.read_text() == 'ran'


def test_toolbox_test_py_loads_runner_checkpoint(tmp_path):
    """MMAction2's unchanged tools/test.py with a checkpoint saved by a real
    Runner (HistoryBuffer in it, which torch >= 2.6's default refuses) and
    custom_imports=['mmxai']: loads through mmxai's safe loader. (Without
    mmxai the PyPI 1.2.0 wheel's tools/test.py stops earlier, on its
    missing drn package.)"""
    import subprocess

    import explain_data as data
    root = str(tmp_path / 'data')
    data.make_dataset(root, num=2)
    work = str(tmp_path / 'train')
    runner = Runner(
        model=tiny_models.i3d_cfg(num_classes=data.NUM_CLASSES),
        work_dir=work,
        train_dataloader=DataLoader(_Clips(), batch_size=2,
                                    collate_fn=pseudo_collate),
        train_cfg=dict(by_epoch=False, max_iters=1, val_interval=100),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                           by_epoch=False)),
        randomness=dict(seed=0), default_scope='mmaction')
    runner.train()
    ckpt = osp.join(work, 'iter_1.pth')
    with pytest.raises(pickle.UnpicklingError, match='HistoryBuffer'):
        torch.load(ckpt, weights_only=True)  # what MMEngine alone calls
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('MMXAI_TRUST_CHECKPOINT', None)
    cfg = data.write_config(str(tmp_path / 'cfg.py'), root, imports=['mmxai'])
    proc = subprocess.run(
        [data.PYTHON, data.test_script(), cfg, ckpt, '--work-dir',
         str(tmp_path / 'wd')], capture_output=True, text=True, env=env,
        timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-2000:]
    assert 'acc/top1' in out
    assert 'by mmxai_local backend' in out


def test_bundled_demo_checkpoint_through_mmengines_loader():
    """The bundled Runner-saved demo checkpoint, loaded the way the Runner
    loads ``load_from`` (mmengine.runner.load_checkpoint), fits its config."""
    from mmengine.runner import load_checkpoint as mmengine_load
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = mmengine.Config.fromfile(
        osp.join(root, 'configs/demo/i3d_tiny_synthetic.py'))
    model = tiny_models.build(cfg.model, seed=3)
    ckpt = mmengine_load(model, osp.join(root, 'demo/i3d_tiny_synthetic.pth'),
                         map_location='cpu', strict=True)
    assert 'message_hub' in ckpt
    state = model.state_dict()
    for k, v in ckpt['state_dict'].items():
        assert torch.equal(state[k], v), k


# ------------------------------------------- forged numpy values, fuzzing
def _run_fuzz(*args, env=None, timeout=180):
    """The checkpoint_fuzz CLI in a subprocess: a crash (segfault) fails the
    test instead of killing pytest."""
    import subprocess
    import sys
    proc = subprocess.run(
        [sys.executable, '-m', 'mmxai.testing.checkpoint_fuzz', *args],
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS='1', **(env or {})))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f'exit {proc.returncode} (negative: killed by a signal); last '
        f'lines:\n{out[-1500:]}')
    done = [ln for ln in proc.stdout.splitlines()
            if not ln.endswith(': ...')]
    return done


def test_crafted_numpy_values_give_one_line_error(tmp_path, http_dir):
    """Forged dtypes/buffers on the allowlisted numpy path (segfaults of
    numpy's own unpickling before): one-line MMXAIError, from a local
    file (zip and legacy format) and from a URL; the process lives."""
    from mmxai.testing.checkpoint_fuzz import CRAFTED, crafted_checkpoint
    root, base, cache = http_dir
    files = []
    for case in CRAFTED:
        files.append(crafted_checkpoint(str(tmp_path / f'{case}.pth'), case))
        files.append(crafted_checkpoint(str(tmp_path / f'{case}_old.pth'),
                                        case, legacy=True))
    crafted_checkpoint(str(root / 'forged.pth'), 'hidden_object_field_array')
    files.append(f'{base}/forged.pth')
    lines = _run_fuzz('load', *files, env=dict(MMXAI_CACHE=str(cache)))
    assert len(lines) == len(files)
    for f, line in zip(files, lines):
        assert line.startswith(f + ': '), line
        outcome = line[len(f) + 2:]
        assert outcome.startswith(('UntrustedCheckpointError: ',
                                   'InputError: ')), line
        assert '[MULTILINE]' not in line
    by_case = dict(zip(files, lines))
    hidden = by_case[str(tmp_path / 'hidden_object_field_array.pth')]
    assert "dtype 'V8'" in hidden and '--trust-checkpoint' in hidden
    assert 'needs 8000000 bytes, the file has 32' in by_case[
        str(tmp_path / 'shape_larger_than_buffer.pth')]
    assert 'UntrustedCheckpointError' in by_case[f'{base}/forged.pth']


def test_crafted_numpy_value_in_process_is_mmxai_error(tmp_path):
    """The same through the API in this process (after the subprocess check
    above proved it cannot crash)."""
    from mmxai.testing.checkpoint_fuzz import crafted_checkpoint
    path = crafted_checkpoint(str(tmp_path / 'f.pth'), 'object_scalar')
    with pytest.raises(UntrustedCheckpointError, match="dtype 'O'") as err:
        load_checkpoint_file(path)
    assert '\n' not in str(err.value)
    path = crafted_checkpoint(str(tmp_path / 'g.pth'), 'negative_shape')
    with pytest.raises(InputError, match=r'shape \(-1,\)'):
        load_checkpoint_file(path)


def test_plain_numpy_values_round_trip(tmp_path):
    """Every plain kind, byte order, memory order and size loads exactly as
    numpy's own unpickling would build it."""
    np = pytest.importorskip('numpy')
    values = dict(
        f8=np.arange(6, dtype='<f8').reshape(2, 3),
        big=np.arange(5, dtype='>i4'),
        fortran=np.asfortranarray(np.arange(12.).reshape(3, 4)),
        u1=np.array([0, 255], np.uint8), b=np.array([True, False]),
        c=np.array([1 + 2j], np.complex64), f2=np.ones(3, np.float16),
        s=np.array([b'ab', b'c']), u=np.array(['wave', 'jümp']),
        empty=np.zeros((0, 3), np.float32), zero_d=np.array(3.5),
        scalars=[np.float64(0.25), np.int64(-7), np.bool_(True),
                 np.str_('x'), np.bytes_(b'y'), np.complex128(1j)],
        dtypes=(np.dtype('float32'), np.dtype('>u2'), np.dtype('U3')),
        types={'t': np.float32, 'arr_cls': np.ndarray, 'dt_cls': np.dtype})
    for legacy in (False, True):
        path = str(tmp_path / f'np{legacy}.pth')
        torch.save(dict(meta=values), path,
                   _use_new_zipfile_serialization=not legacy)
        got = load_checkpoint_file(path)['meta']
        for k in ('f8', 'big', 'fortran', 'u1', 'b', 'c', 'f2', 's', 'u',
                  'empty', 'zero_d'):
            a, b = values[k], got[k]
            assert type(b) is np.ndarray, k
            assert b.dtype == a.dtype and b.shape == a.shape, k
            assert np.array_equal(a, b), k
            assert b.flags.writeable and b.flags.owndata, k
        assert got['fortran'].flags.f_contiguous
        assert got['big'].dtype.byteorder == '>'
        for a, b in zip(values['scalars'], got['scalars']):
            assert type(b) is type(a) and b == a
        assert got['dtypes'] == values['dtypes']
        assert got['types'] == values['types']


def test_fuzzed_runner_checkpoint_never_crashes(runner_ckpt):
    """200 seeded byte mutations of a Runner checkpoint's data.pkl: each
    loads or gives one MMXAIError line, in one process that exits normally
    (no segfault, no other exception)."""
    lines = _run_fuzz('fuzz', runner_ckpt[0], '--count', '200', '--seed',
                      '20')
    assert len(lines) == 200
    bad = [ln for ln in lines if 'UNHANDLED' in ln or '[MULTILINE]' in ln]
    assert not bad, bad[:5]
    outcomes = {ln.split(': ', 1)[1].split(':')[0] for ln in lines}
    assert outcomes <= {'InputError', 'UntrustedCheckpointError'} | {
        o for o in outcomes if o.startswith('loaded')}
    assert any(o.startswith('loaded') for o in outcomes)
    assert 'InputError' in outcomes


# ------------------------------------------------ the URL cache
@pytest.fixture
def zoo(tmp_path, monkeypatch):
    """An http server whose answers the test sets: ``routes[path] =
    (content_type, body, declared_length or None)``."""
    routes = {}

    class Zoo(http.server.BaseHTTPRequestHandler):

        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path not in routes:
                self.send_error(404)
                return
            ctype, body, length = routes[self.path]
            self.send_response(200)
            self.send_header('Content-Type', ctype)
            self.send_header('Content-Length',
                             str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Zoo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / 'cache'
    monkeypatch.setenv('MMXAI_CACHE', str(cache))
    monkeypatch.delenv('MMXAI_DOWNLOAD_TIMEOUT', raising=False)
    yield routes, f'http://127.0.0.1:{server.server_address[1]}', cache
    server.shutdown()
    server.server_close()


def _cached(cache):
    return sorted(osp.relpath(osp.join(d, f), cache)
                  for d, _, fs in os.walk(cache) for f in fs)


def _sha(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def test_bad_downloads_are_not_cached(zoo, runner_ckpt):
    """An HTML page, a truncated transfer, garbage: one line naming the URL,
    nothing left in the cache, and the fixed server's file then loads."""
    routes, base, cache = zoo
    good = open(runner_ckpt[0], 'rb').read()
    url = f'{base}/i3d.pth'
    bad = {
        'html': (('text/html', b'<html><body>Sign in</body></html>', None),
                 'the server sent text/html'),
        'truncated': (('application/octet-stream', good[:5000], len(good)),
                      'stopped after 5000'),
        'garbage': (('application/octet-stream',
                     b'\x80' + os.urandom(3000), None),
                    'not a PyTorch checkpoint'),
        'zip_garbage': (('application/octet-stream', good[:4096] + good[
            -2000:], None), 'not a PyTorch checkpoint'),
    }
    for name, (answer, expected) in bad.items():
        routes['/i3d.pth'] = answer
        with pytest.raises(InputError) as err:
            load_checkpoint_file(url)
        msg = str(err.value)
        assert expected in msg and url in msg, (name, msg)
        assert 'nothing was cached' in msg and '\n' not in msg, msg
        assert _cached(cache) == [], (name, _cached(cache))
    routes['/i3d.pth'] = ('application/octet-stream', good, None)
    model = fresh_model()
    load_checkpoint(model, url)
    assert_weights(model, runner_ckpt[1])
    assert [osp.basename(p) for p in _cached(cache)] == ['i3d.pth']


def test_hash_suffix_checked_on_download_and_cache_hit(zoo, runner_ckpt,
                                                       tmp_path):
    routes, base, cache = zoo
    good = open(runner_ckpt[0], 'rb').read()
    right = f'/zoo_20220812-{_sha(good)[:8]}.pth'
    wrong = '/zoo_20220812-deadbeef.pth'
    routes[right] = routes[wrong] = ('application/octet-stream', good, None)
    with pytest.raises(InputError, match='not deadbeef... as its name says'):
        load_checkpoint_file(base + wrong)
    assert _cached(cache) == []
    ckpt = load_checkpoint_file(base + right)
    assert ckpt['meta']['iter'] == 2
    (entry, ) = _cached(cache)
    entry = cache / entry
    # Another checkpoint put in its place: noticed, downloaded again.
    other = tmp_path / 'other.pth'
    torch.save(dict(state_dict=fresh_model(seed=9).state_dict()), other)
    entry.write_bytes(other.read_bytes())
    model = fresh_model()
    load_checkpoint(model, base + right)
    assert_weights(model, runner_ckpt[1])
    assert entry.read_bytes() == good
    # A date-like all-digit suffix is not a hash.
    routes['/model-20220812.pth'] = routes[right]
    assert load_checkpoint_file(base + '/model-20220812.pth')['meta'][
        'iter'] == 2


def test_damaged_cache_entry_names_the_file(zoo, runner_ckpt):
    routes, base, cache = zoo
    good = open(runner_ckpt[0], 'rb').read()
    routes['/plain.pth'] = ('application/octet-stream', good, None)
    load_checkpoint_file(base + '/plain.pth')
    (entry, ) = _cached(cache)
    entry = cache / entry
    entry.write_bytes(b'<html>oops</html>')
    with pytest.raises(InputError) as err:
        load_checkpoint_file(base + '/plain.pth')
    msg = str(err.value)
    assert str(entry) in msg and 'delete it to download again' in msg
    assert '\n' not in msg
    entry.unlink()
    assert load_checkpoint_file(base + '/plain.pth')['meta']['iter'] == 2


def test_silent_server_times_out(zoo, monkeypatch):
    """A server that accepts and never answers: one line after the
    timeout (MMXAI_DOWNLOAD_TIMEOUT), not a hang."""
    import socket
    import time
    from mmxai.checkpoint import (DEFAULT_DOWNLOAD_TIMEOUT,
                                  download_timeout)
    _, _, cache = zoo
    assert download_timeout() == DEFAULT_DOWNLOAD_TIMEOUT == 60
    mute = socket.socket()
    mute.bind(('127.0.0.1', 0))
    mute.listen(4)  # never accepts, never sends
    try:
        url = f'http://127.0.0.1:{mute.getsockname()[1]}/w.pth'
        monkeypatch.setenv('MMXAI_DOWNLOAD_TIMEOUT', '0.5')
        start = time.monotonic()
        with pytest.raises(InputError) as err:
            load_checkpoint_file(url)
        assert time.monotonic() - start < 10
        msg = str(err.value)
        assert url in msg and 'no data' in msg and '0.5 s' in msg
        assert 'MMXAI_DOWNLOAD_TIMEOUT' in msg and '\n' not in msg
        assert _cached(cache) == []
        monkeypatch.setenv('MMXAI_DOWNLOAD_TIMEOUT', 'soon')
        with pytest.raises(InputError, match="MMXAI_DOWNLOAD_TIMEOUT='soon'"):
            load_checkpoint_file(url)
    finally:
        mute.close()
