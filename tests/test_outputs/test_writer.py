"""The one output writer: vocabulary, aliases, layouts, staging."""
import json
import os
import os.path as osp

import numpy as np
import pytest

from mmxai.errors import ConfigError, OutputError
from mmxai.outputs import (DATASET_LAYOUT, HOOK_LAYOUT, OUTPUT_NAMES,
                           VIDEO_LAYOUT, FrameTrack, OutputWriter,
                           RankOutputs, resolve_outputs)


def test_one_vocabulary_and_deprecated_aliases():
    assert resolve_outputs(['json', 'npz', 'video']) == ('json', 'npz',
                                                         'video')
    with pytest.warns(DeprecationWarning, match="'maps' is deprecated"):
        assert resolve_outputs(['maps', 'overlay', 'temporal', 'npz']) == (
            'npz', 'video', 'plot')
    with pytest.raises(ConfigError, match="unknown output 'movie'"):
        resolve_outputs(['movie'], 'ExplainHook', ConfigError)
    with pytest.raises(OutputError, match='choose from ' +
                       ', '.join(OUTPUT_NAMES)):
        resolve_outputs('movie')
    assert resolve_outputs(None) == () and resolve_outputs(()) == ()


def test_layouts_name_each_mode_as_before():
    assert VIDEO_LAYOUT.path('video', 0, 'overlay') == 'overlay.mp4'
    assert VIDEO_LAYOUT.path('plot', 0, 'x') == 'temporal_importance.png'
    assert HOOK_LAYOUT.path('video', 7, 'view1_top2') == '000007/view1_top2.mp4'
    assert HOOK_LAYOUT.path('npz', 7, suffix='_top2') == '000007/maps_top2.npz'
    assert HOOK_LAYOUT.path('montage', 7, 'view0') == '000007/view0_montage.png'
    assert DATASET_LAYOUT.path('json', 3) == 'records/000003.json'
    assert DATASET_LAYOUT.path('npz', 3) == 'maps/000003.npz'
    assert DATASET_LAYOUT.path('video', 3, 'view0') == 'views/000003/view0.mp4'


def _track(stem='view0'):
    rng = np.random.default_rng(0)
    return FrameTrack(stem=stem, frames=rng.integers(0, 255, (4, 16, 16, 3),
                                                     dtype=np.uint8),
                      maps=rng.random((4, 16, 16)), lines=['GT: a'])


def test_writer_writes_every_name_and_lists_exactly_what_exists(tmp_path):
    writer = OutputWriter(OUTPUT_NAMES, HOOK_LAYOUT)
    seen = {}

    def record(files):
        seen['files'] = files
        return dict(files=files.all())
    files = writer.write_sample(str(tmp_path), 5, [
        RankOutputs(dict(maps=np.zeros((1, 2))), [_track()]),
        RankOutputs(dict(maps=np.ones((1, 2))), [_track('view0_top2')],
                    '_top2')], record=record)
    folder = tmp_path / '000005'
    names = sorted(os.listdir(folder))
    assert names == sorted([
        'explanation.json', 'maps.npz', 'maps_top2.npz', 'view0.mp4',
        'view0.gif', 'view0_montage.png', 'view0_temporal.png',
        'view0_top2.mp4', 'view0_top2.gif', 'view0_top2_montage.png',
        'view0_top2_temporal.png'])
    assert files.record == 'explanation.json'
    rec = json.loads((folder / 'explanation.json').read_text())
    assert sorted(rec['files']) == sorted(n for n in names
                                          if n != 'explanation.json')
    assert files.rank_files(1) == ['maps_top2.npz', 'view0_top2.mp4',
                                   'view0_top2.gif', 'view0_top2_montage.png',
                                   'view0_top2_temporal.png']
    assert not [n for n in os.listdir(tmp_path) if n.startswith('.')]


def test_writer_failure_leaves_nothing(tmp_path):
    writer = OutputWriter(('npz', 'json'), DATASET_LAYOUT)

    def record(files):
        raise RuntimeError('boom')
    with pytest.raises(RuntimeError):
        writer.write_sample(str(tmp_path), 0, [
            RankOutputs(dict(maps=np.zeros(2)))], record=record)
    assert os.listdir(tmp_path) == []  # no npz without its record


def test_no_outputs_writes_nothing(tmp_path):
    files = OutputWriter((), HOOK_LAYOUT).write_sample(
        str(tmp_path / 'x'), 0, [RankOutputs(dict(maps=np.zeros(2)),
                                             [_track()])])
    assert files.all() == [] and not osp.exists(tmp_path / 'x')


def test_method_extras_found_by_registration(tmp_path):
    """A method's extras writer is looked up by its name; the record lists
    its files; no registration, no extras."""
    from mmxai.registry import OUTPUT_EXTRAS

    class Exp:
        method = 'test_only_extras'

    def extras(exp, folder, frames, class_names):
        os.makedirs(folder, exist_ok=True)
        path = osp.join(folder, 'extra.txt')
        with open(path, 'w') as f:
            f.write(str(frames.shape))
        return [path]
    OUTPUT_EXTRAS.register_module(name=Exp.method, module=extras)
    try:
        writer = OutputWriter(('json', ), DATASET_LAYOUT)
        files = writer.write_sample(
            str(tmp_path), 2, [RankOutputs({})],
            record=lambda f: dict(files=f.all()), explanation=Exp(),
            extras_frames=np.zeros((2, 4, 4, 3), np.uint8))
    finally:
        OUTPUT_EXTRAS._module_dict.pop(Exp.method)
    assert files.extras == ['extras/000002/extra.txt']
    assert (tmp_path / 'extras/000002/extra.txt').read_text() == \
        '(2, 4, 4, 3)'
    rec = json.loads((tmp_path / 'records/000002.json').read_text())
    assert rec['files'] == ['extras/000002/extra.txt']
    Exp.method = 'gradcam'  # nothing registered
    files = writer.write_sample(str(tmp_path), 3, [RankOutputs({})],
                                record=lambda f: {}, explanation=Exp())
    assert files.extras == []
