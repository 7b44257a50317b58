"""SequenceTrack on a hand-made explanation: the online lookup rule, the
top moments, the viewer's quantised rows and their subsampling, the
timeline matrix, and the timeline figure's extra panels."""
from types import SimpleNamespace

import numpy as np
import pytest

from mmxai.outputs import SequenceTrack
from mmxai.visualization.timeline import importance_strip, plot_timeline


def _res():
    """T = 10 grid frames at 1 fps (interval 5 at 5 fps); explained at
    grid frames 6 and 3 (unsorted), contexts 2..6 and 0..3."""
    occ = np.zeros((2, 10), np.float32)
    occ[0, 2:7] = [0.1, -0.4, 0.0, 0.8, 2.0]
    occ[1, 0:4] = [1.0, 0.5, -0.25, 0.0]
    return SimpleNamespace(
        importance=dict(occlusion=occ, ig=-occ), times=np.array([6, 3]),
        context_start=np.array([2, 0]), targets=np.array([1, 0]),
        frame_inds=np.arange(10) * 5, fps=5.0, class_names=['a', 'b'])


def test_order_lookup_and_top():
    tr = SequenceTrack.from_explanation(_res())
    assert list(tr.times) == [3, 6] and tr.shown == 'occlusion'
    np.testing.assert_array_equal(tr.times_s, [3.0, 6.0])
    assert tr.index_at(2.99) is None
    assert tr.index_at(3.0) == 0 and tr.index_at(5.9) == 0
    assert tr.index_at(6.0) == 1 and tr.index_at(100) == 1
    assert tr.top(1) == [6, 5, 2]  # 2.0, 0.8, 0.1
    assert tr.top(0, 2) == [0, 1]
    s, v = tr.context(1, 'ig')
    assert list(s) == [2, 3, 4, 5, 6] and v[-1] == -2.0
    assert SequenceTrack.from_explanation(_res(), shown='ig').shown == 'ig'
    assert SequenceTrack.from_explanation(_res(), shown='x').shown == \
        'occlusion'


def test_viewer_rows_quantised_and_subsampled():
    tr = SequenceTrack.from_explanation(_res())
    d = tr.viewer_data()
    assert d['grid_dt'] == 1.0 and d['explained'] == 2
    (t0, c0, a0, s0, q0), (t1, c1, a1, s1, q1) = d['rows']
    assert (t0, c0, a0, s0, q0) == (3.0, 0, 0, 1.0, [100, 50, -25, 0])
    assert (t1, c1, a1, s1) == (6.0, 1, 2, 2.0)
    assert q1 == [5, -20, 0, 40, 100]
    assert len(tr.viewer_data(max_rows=1)['rows']) == 1


def test_matrix_rows_follow_the_lookup_rule():
    tr = SequenceTrack.from_explanation(_res())
    img, edges = tr.matrix('occlusion', np.array([1.0, 4.0, 7.0]))
    assert img.shape == (3, 10) and np.isnan(img[0]).all()
    np.testing.assert_allclose(img[1, :4], [1.0, 0.5, -0.25, 0.0])
    np.testing.assert_allclose(img[2, 2:7], [0.05, -0.2, 0, 0.4, 1.0])
    np.testing.assert_allclose(edges[[0, -1]], [-0.5, 9.5])
    img, edges = tr.matrix('occlusion', np.array([7.0]), max_cols=5)
    # normalised row [0, 0, .05, -.2, 0, .4, 1, 0, 0, 0], means of pairs
    np.testing.assert_allclose(img[0], [0, -0.075, 0.2, 0.5, 0], atol=1e-7)
    np.testing.assert_allclose(edges, [-0.5, 1.5, 3.5, 5.5, 7.5, 9.5])


def test_importance_strip():
    v = np.full(8, np.nan, np.float32)
    v[2:6] = [1.0, -1.0, 0.0, 0.5]
    img = importance_strip(v, 8, 20, explained=5)
    assert img.shape == (20, 8, 3)
    assert (np.delete(img[:, 0], 10, 0) == 24).all()  # outside the context
    assert (img[10, [0, 4]] == 90).all()  # the middle line
    assert (img[:, 5] == 255).all()  # the tick
    assert tuple(img[2, 2]) == (230, 50, 40) and tuple(img[18, 2]) == (
        60, 60, 60)  # positive: red above the middle only
    assert tuple(img[18, 3]) == (50, 110, 230) and tuple(img[2, 3]) == (
        60, 60, 60)


@pytest.mark.parametrize('with_seq', [False, True])
def test_timeline_figure_panels(tmp_path, with_seq):
    import cv2
    tr = SequenceTrack.from_explanation(_res()) if with_seq else None
    t = np.arange(3.0, 10.0)
    path = plot_timeline(tmp_path / 't.png', t, np.ones(7, int), np.ones(7),
                         np.ones(7), ['a', 'b'], window_s=1.0, sequence=tr)
    h = cv2.imread(str(path)).shape[0]
    assert (h > 700) == with_seq  # two more panels (occlusion, ig)


def test_strip_values_aligned_and_zoomed():
    tr = SequenceTrack.from_explanation(_res())
    cols = np.arange(10) + 0.2  # one column per grid frame, 10 s shown
    v, tick, zoomed = tr.strip_values(1, cols, span=10.0)
    assert not zoomed and tick == 6
    assert np.isnan(v[[0, 1, 7, 8, 9]]).all()
    np.testing.assert_allclose(v[2:7], [0.05, -0.2, 0, 0.4, 1.0])
    # the same 5 s context in a 100 s span: under 15 %, stretched
    v, tick, zoomed = tr.strip_values(1, np.linspace(0, 100, 10), span=100)
    assert zoomed and tick == 9
    np.testing.assert_allclose(v, np.repeat([0.05, -0.2, 0, 0.4, 1.0], 2))
