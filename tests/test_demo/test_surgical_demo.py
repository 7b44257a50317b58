"""The bundled surgical demo (demo/surgical/): a held-out generated procedure
in Cholec80's layout and the procedure benchmark's phase model.

Checked against what the files must agree on (the video's frame count, the
25 fps phase time line, the 1 fps tool rows, the generator's masks), the
safe loader (weights-only, no ``trust_checkpoint``) and the model's own
contract: an online model names the phase at the last frame of its window.
"""
import os
import os.path as osp
import shlex
import sys

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(ROOT, 'demo', 'surgical')
NAME = 'video11'
VIDEO = osp.join(DEMO, NAME + '.mp4')
PHASE = osp.join(DEMO, NAME + '-phase.txt')
TOOL = osp.join(DEMO, NAME + '-tool.txt')
MASKS = osp.join(DEMO, NAME + '-masks.npz')
CKPT = osp.join(DEMO, 'phase_tcn_procedures.pth')
CONFIG = osp.join(ROOT, 'configs', 'surgical',
                  'resnet18s2_tcn_procedures.py')
FPS = 5.0
#: The issue's goal for the phase model (held-out frame accuracy >= 90 %;
#: the shipped model: 0.986 seed 0, 0.995 seed 1, docs/surgical_benchmark.md).
#: A model of another task, untrained weights or the labels of another
#: procedure fall far below it (a constant prediction gets at most the
#: largest phase's share of the range, 0.35 here).
MIN_ACCURACY = 0.9


def _video_frames():
    import decord
    vr = decord.VideoReader(VIDEO)
    return len(vr), float(vr.get_avg_fps()), vr[0].shape


def test_bundle_is_small_and_complete():
    sizes = {f: osp.getsize(osp.join(DEMO, f)) for f in (
        NAME + '.mp4', NAME + '-phase.txt', NAME + '-tool.txt',
        NAME + '-masks.npz')}
    assert sum(sizes.values()) < 1 * 2**20, sizes  # the procedure: < 1 MiB
    assert osp.getsize(CKPT) < 4 * 2**20  # "a few MB"


def test_annotations_match_the_video():
    from mmxai.datasets.phase_labels import (CHOLEC80_FPS, CHOLEC80_PHASES,
                                             CHOLEC80_TOOLS)
    n, fps, shape = _video_frames()
    assert fps == FPS and shape == (64, 64, 3)
    assert 60 * FPS <= n <= 120 * FPS  # a minute or two
    # phase file: Cholec80's header and one row per frame of a 25 fps time
    # line covering the video, frame numbers 0, 1, 2, ... in order
    with open(PHASE) as f:
        lines = f.read().splitlines()
    assert lines[0] == 'Frame\tPhase'
    rows = [ln.split('\t') for ln in lines[1:]]
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    assert len(rows) == round(n / FPS * CHOLEC80_FPS)
    names = [r[1] for r in rows]
    assert set(names) == set(CHOLEC80_PHASES)  # all 7 phases occur
    # tool file: 1 fps, frames 0, 25, 50, ... (25 fps numbering) up to the
    # video's end, 7 binary columns
    with open(TOOL) as f:
        tlines = f.read().splitlines()
    assert tlines[0].split('\t') == ['Frame'] + list(CHOLEC80_TOOLS)
    trows = np.array([[int(c) for c in ln.split('\t')] for ln in tlines[1:]])
    assert list(trows[:, 0]) == list(range(0, len(rows), 25))
    assert set(np.unique(trows[:, 1:])) <= {0, 1}
    # the generator's masks: one per video frame, its phases those of the
    # phase file at the same times, each phase instrument's mask non-empty
    m = np.load(MASKS)
    assert m['phase_mask'].shape == (n, 64, 64) and float(m['fps']) == FPS
    at25 = (np.arange(n) / FPS * CHOLEC80_FPS).astype(int)
    assert [CHOLEC80_PHASES[p] for p in m['phase']] == \
        [names[i] for i in at25]
    assert m['phase_mask'].reshape(n, -1).any(1).all()
    # the phase instrument is present in the tool rows of its phase
    secs = trows[:, 0] // 25
    assert (trows[np.arange(len(secs)), 1 + m['phase'][secs * int(FPS)]]
            == 1).all()


def test_cholec80_reader_serves_the_bundle():
    """The real-format reader (one flat folder) accepts the three files:
    lengths, header and tool rows are validated there."""
    from mmxai.datasets import Cholec80Dataset
    ds = Cholec80Dataset(data_root=DEMO, data_prefix=dict(
        video='', label='', tool=''), videos=[11], sample_fps=1.0,
        clip_len=8, pipeline=[], test_mode=True)
    n, _, _ = _video_frames()
    assert len(ds) == len(range(0, n, int(FPS)))  # one window per second
    last = ds.get_data_info(len(ds) - 1)
    assert last['label_frame'] == last['frame_inds'][-1]  # online label


@pytest.fixture(scope='module')
def model():
    from mmxai.apis.model import init_recognizer
    return init_recognizer(CONFIG, CKPT)  # weights-only, strict


def test_checkpoint_loads_safely_and_fits(model):
    import torch

    from mmxai.checkpoint import load_checkpoint_file
    from mmxai.datasets.phase_labels import CHOLEC80_PHASES
    ckpt = load_checkpoint_file(CKPT)  # the allowlist, no trust_checkpoint
    assert set(ckpt) == {'meta', 'state_dict', 'message_hub'}  # as saved
    state = model.state_dict()
    assert set(ckpt['state_dict']) == set(state)
    for k, v in ckpt['state_dict'].items():
        assert torch.equal(state[k], v), k
    assert not getattr(model, 'mmxai_checkpoint_warning', None)
    assert tuple(model.dataset_meta['classes']) == CHOLEC80_PHASES


def test_long_video_run_on_the_bundle(model):
    """``--windows --start 50 --end 90`` (the last five phase segments:
    Packaging, Cleaning, Retraction, Cleaning, Retraction; four transitions):
    every window's prediction is scored at its label frame (its last
    sampled frame, the online label the model was trained on), and the
    saliency maps put far more mass on the phase instrument than a uniform
    map would."""
    from mmxai.apis import explain_long_video
    tl = explain_long_video(model, VIDEO, method='saliency', start=50,
                            end=90, stride='4s', batch_size=8, gt=PHASE,
                            progress=False, keep_maps=True)
    ok = [w for w in tl if w.ok]
    assert len(ok) == len(tl) >= 9
    assert tl.accuracy is not None
    last = np.array([w.frame_inds[-1] for w in ok])
    pred = np.array([w.pred for w in ok])
    assert (pred == tl.gt[last]).mean() >= MIN_ACCURACY, (pred, tl.gt[last])
    assert len(set(tl.gt[last])) >= 3  # the range does change phase
    m = np.load(MASKS)
    share, inside = [], []
    for i, w in enumerate(ok):
        maps = np.maximum(tl.maps(i)['maps'].astype(np.float64), 0)
        masks = m['phase_mask'][w.frame_inds]
        # evidence of the predicted phase: its instrument in its frames
        masks = masks & (m['phase'][w.frame_inds] == w.pred)[:, None, None]
        assert maps.shape == masks.shape
        inside.append(maps[masks].sum() / max(maps.sum(), 1e-12))
        share.append(masks.mean())
    # benchmark (all held-out windows): 0.10 inside vs 0.011 uniform
    assert np.mean(inside) > 3 * np.mean(share), (inside, share)


def _make_demo_commands():
    """The ``tools/explain.py`` command lines of the Makefile's demo
    recipe (continuation lines joined, ``$(PY)`` dropped)."""
    with open(osp.join(ROOT, 'Makefile')) as f:
        text = f.read().replace('\\\n', ' ')
    recipe = text.split('\ndemo:', 1)[1].split('\n\n', 1)[0]
    return [shlex.split(ln.split('tools/explain.py', 1)[1])
            for ln in recipe.splitlines() if 'tools/explain.py' in ln]


def test_make_demo_runs_the_bundle():
    """``make demo``'s surgical command names these files and passes the
    CLI's own checks (files, config, options, method: no model built)."""
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import explain as cli
    runs = [a for a in _make_demo_commands() if '--windows' in a]
    assert len(runs) == 1, _make_demo_commands()
    args = cli.parse_args(runs[0])
    assert (osp.join(ROOT, args.config), osp.join(ROOT, args.checkpoint),
            osp.join(ROOT, args.video), osp.join(ROOT, args.gt)) == (
                CONFIG, CKPT, VIDEO, PHASE)
    assert args.method == 'saliency' and args.windows and args.sequence
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)  # the Makefile's paths are relative to the root
        cli.preflight(args)
    finally:
        os.chdir(cwd)
