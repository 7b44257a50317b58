"""explain_phase_video / ``--windows --sequence``: the shipped phase model
on the bundled procedure, the windows' spatial maps and the whole-video
temporal attribution combined in one timeline, overlay and viewer: every
window's time explained, the drawn values equal to the stored arrays, the
overlay strip where the context is, the viewer in headless Chromium, resume,
the CLI, the model left as found."""
import json
import os.path as osp
import re
import sys

import cv2
import numpy as np
import pytest
import torch

from mmxai.apis import explain_phase_video, init_recognizer
from mmxai.outputs import SequenceTrack, Timeline
from mmxai.testing.browser import chromium_probe, find_chromium
from mmxai.testing.coverage import ModelSnapshot
from mmxai.visualization.timeline import browser_codec_available

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs/surgical/resnet18s2_tcn_procedures.py')
DEMO = osp.join(ROOT, 'demo/surgical')
CKPT = osp.join(DEMO, 'phase_tcn_procedures.pth')
VIDEO = osp.join(DEMO, 'video11.mp4')
GT = osp.join(DEMO, 'video11-phase.txt')
SPAN = dict(start='50s', end='80s', stride='2s', batch_size=8)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def model():
    return init_recognizer(CONFIG, CKPT)


@pytest.fixture(scope='module')
def browser():
    path = find_chromium()
    if path is None:
        pytest.skip('no chromium: .ci/run installs it (apt-get install '
                    'chromium)')
    return path


@pytest.fixture(scope='module')
def combined(model, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('pv') / 'o')
    snap = ModelSnapshot(model)
    tl, res = explain_phase_video(model, VIDEO, method='saliency',
                                  out_dir=out, gt=GT, progress=False,
                                  overlay_size=240, **SPAN)
    assert snap.changes() == []
    return out, tl, res


def test_every_window_time_is_explained(combined):
    out, tl, res = combined
    interval = res.interval
    want = sorted({int(w.at_frame // interval) for w in tl})
    assert list(res.times) == want and len(want) >= 10
    track = SequenceTrack.load(osp.join(out, 'sequence'), res.fps)
    assert list(track.times) == want
    for m in res.importance:
        np.testing.assert_array_equal(track.importance[m], res.importance[m])
    for w in tl:  # the row a window shows is its own time's
        i = track.index_at(w.at_frame / res.fps)
        assert track.times[i] == int(w.at_frame // interval)
    assert track.index_at(track.times_s[0] - 0.5) is None
    assert tl.settings['sequence']['explained'] == len(want)
    assert json.load(open(osp.join(out, 'timeline.json')))['settings'][
        'sequence']['shown'] == 'occlusion'
    for name in ('sequence/importance.npz', 'sequence/sequence.json',
                 'sequence/importance.png', 'index.html', 'overlay.mp4',
                 'timeline.png'):
        assert osp.isfile(osp.join(out, name)), name


def _viewer_data(out):
    page = open(osp.join(out, 'index.html')).read()
    m = re.search(r'<script id="timeline-data" type="application/json">'
                  r'(.*?)</script>', page, re.S)
    return json.loads(m.group(1).replace('<\\/', '</'))


def test_viewer_rows_are_the_stored_values(combined):
    out, tl, res = combined
    seq = _viewer_data(out)['sequence']
    assert seq['method'] == 'occlusion' and seq['explained'] == len(res.times)
    assert abs(seq['grid_dt'] - res.interval / res.fps) < 1e-9
    mat = res.importance['occlusion']
    for i, (ts, c, a, scale, q) in enumerate(seq['rows']):
        t = int(res.times[i])
        assert abs(ts - res.times_s[i]) < 1e-3 and c == res.targets[i]
        assert a == res.context_start[i] and len(q) == t - a + 1
        vals = mat[i, a:t + 1]
        assert abs(scale - np.abs(vals).max()) <= 1e-3 * scale
        np.testing.assert_allclose(np.asarray(q) * scale / 100, vals,
                                   atol=0.0051 * scale)


def test_overlay_strip_marks_the_context(combined):
    """The strip under the frame at time tau: the explained time's column
    white, the context's columns grey, the rest dark (H.264: +-25)."""
    out, tl, res = combined
    cap = cv2.VideoCapture(osp.join(out, 'overlay.mp4'))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    t0, t1 = 50.0, 80.0
    k = n * 2 // 3
    cap.set(cv2.CAP_PROP_POS_FRAMES, k)
    ok, frame = cap.read()
    cap.release()
    assert ok
    tau = t0 + k / 5.0  # overlay at 5 fps from 50 s
    track = SequenceTrack.load(osp.join(out, 'sequence'), res.fps)
    i = track.index_at(tau)
    strip = frame[-24:].astype(float).mean(2)  # BGR -> grey
    col = lambda s: int(np.clip((s - t0) / (t1 - t0) * width, 0, width - 1))
    tick = col(track.times_s[i] + 0.5)
    a = track.grid_s[track.context_start[i]]
    assert strip[:, max(0, tick - 1):tick + 2].max(1).mean() > 170
    inside = col(a + 1) if a > t0 else col(t0 + 1)
    assert abs(strip[-3:, inside].mean() - 60) < 25  # below the bars
    if tick + 12 < width:
        assert strip[-3:, tick + 10].mean() < 45  # after t: no context


PROBE = """<script>
window.addEventListener('load', () => {
  const v = document.getElementById('video'), c = document.getElementById('timeline');
  const T = window.mmxaiTimeline;
  const report = (extra) => { const p = document.createElement('pre');
    p.id = 'probe'; p.textContent = JSON.stringify(extra); document.body.appendChild(p); };
  const go = () => { try {
    T.seek(__TAU__);
    const row = T.sequenceAt(__TAU__), ctx = c.getContext('2d');
    const xt = Math.round((row[0] - T.data.t0) / (T.data.t1 - T.data.t0) * c.width);
    const px = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
    const buttons = Array.from(document.querySelectorAll('#drives button'));
    const seen = {canvas: [c.width, c.height, c.clientHeight], row_time: row[0],
            tick: px(xt, 96 + 10), outside: px(2, 96 + 10),
            before: T.sequenceAt(T.data.t0 - 1),
            title: document.getElementById('drives-title').textContent,
            buttons: buttons.map(b => b.textContent), top: T.topMoments(row, 3)};
    buttons[1].click();
    report(Object.assign(seen, {after_click: v.currentTime + T.data.t0}));
  } catch (e) { report({error: String(e)}); } };
  if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go);
  v.addEventListener('error', () => report({error: 'video error'}));
});
</script></body>"""


def test_viewer_in_headless_chromium(combined, browser):
    if not browser_codec_available():
        pytest.skip('no H.264 writer (pip install imageio-ffmpeg)')
    out, tl, res = combined
    i = len(res.times) // 2
    tau = float(res.times_s[i]) + 0.7  # between two explained times
    page = open(osp.join(out, 'index.html')).read()
    probe_page = osp.join(out, 'probe.html')
    with open(probe_page, 'w') as f:
        f.write(page.replace('</body>', PROBE.replace('__TAU__', str(tau))))
    try:
        p = chromium_probe(browser, probe_page)
    finally:
        import os
        os.remove(probe_page)
    assert 'error' not in p, p
    assert p['canvas'][1] == 152 and p['canvas'][2] == 152  # the extra row
    assert abs(p['row_time'] - res.times_s[i]) < 1e-3  # last at or before
    assert p['before'] is None
    assert min(p['tick']) > 200 and max(p['outside']) < 60
    name = res.class_names[int(res.targets[i])]
    assert name in p['title'] and 'occlusion' in p['title']
    t = int(res.times[i])
    a = int(res.context_start[i])
    row = res.importance['occlusion'][i, a:t + 1]
    top = a + np.argsort(-row, kind='stable')[:3]
    assert [round(s * res.interval / res.fps, 3) for s in top] == \
        [round(x[0], 3) for x in p['top']]
    assert len(p['buttons']) == 3
    assert abs(p['after_click'] - p['top'][1][0]) < 0.05  # seeks there


def test_resume_recomputes_nothing(combined, model):
    out, tl, res = combined
    tl2, res2 = explain_phase_video(model, VIDEO, method='saliency',
                                    out_dir=out, gt=GT, progress=False,
                                    overlay_size=240, **SPAN)
    assert res2.computed_frames == 0
    for m in res.importance:
        np.testing.assert_allclose(res2.importance[m], res.importance[m],
                                   rtol=1e-5, atol=1e-6)
    assert [w.pred for w in tl2] == [w.pred for w in tl]
    assert Timeline.load(out).settings['sequence']['explained'] == \
        len(res.times)


def test_cli_windows_and_sequence(tmp_path, capsys):
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    import explain as cli
    out = str(tmp_path / 'cli')
    code = cli.main([CONFIG, CKPT, VIDEO, '--windows', '--sequence',
                     '--method', 'saliency', '--start', '60s', '--end',
                     '72s', '--stride', '4s', '--sequence-methods', 'ig',
                     '--outputs', 'timeline', '--no-progress', '--out-dir',
                     out])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert 'windows on' in text.out and 'phase sequence:' in text.out
    assert osp.isfile(osp.join(out, 'sequence', 'importance.npz'))
    assert osp.isfile(osp.join(out, 'timeline.png'))
    assert not osp.exists(osp.join(out, 'overlay.mp4'))  # not asked for
    assert SequenceTrack.load(osp.join(out, 'sequence'), 5.0).shown == 'ig'
    tsn = osp.join(ROOT, 'configs/demo/i3d_tiny_synthetic.py')
    code = cli.main([tsn, osp.join(ROOT, 'demo/i3d_tiny_synthetic.pth'),
                     osp.join(ROOT, 'demo/demo.mp4'), '--windows',
                     '--sequence', '--out-dir', str(tmp_path / 'bad')])
    err = capsys.readouterr().err
    assert code == 2 and err.count('\n') == 1
    assert err.startswith('error: --sequence explains two-stage phase')
    assert not osp.exists(tmp_path / 'bad')


ZOOM_PROBE = """<script>
window.addEventListener('load', () => {
  const c = document.getElementById('timeline'), T = window.mmxaiTimeline;
  const report = (extra) => { const p = document.createElement('pre');
    p.id = 'probe'; p.textContent = JSON.stringify(extra); document.body.appendChild(p); };
  try {
    T.seek(__TAU__);
    const row = T.sequenceAt(__TAU__), n = row[4].length, ctx = c.getContext('2d');
    const px = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
    const xt = Math.round((n - 0.5) / n * c.width);  // the right end
    report({n: n, tick: px(xt, 96 + 40), left: px(1, 96 + 40)});
  } catch (e) { report({error: String(e)}); }
});
</script></body>"""


def test_viewer_zooms_a_short_context(combined, browser):
    """With the zoom threshold above the context's share (forced here:
    ``zoom_below`` 2) the row stretches the context over the canvas: the
    tick moves to the right end, the context starts at the left edge."""
    out, tl, res = combined
    data = _viewer_data(out)
    data['sequence']['zoom_below'] = 2.0
    from mmxai.visualization.timeline_viewer import viewer_html
    i = len(res.times) // 2
    tau = float(res.times_s[i]) + 0.3
    page = osp.join(out, 'zoom.html')
    with open(page, 'w') as f:
        f.write(viewer_html(data).replace('</body>', ZOOM_PROBE.replace(
            '__TAU__', str(tau))))
    try:
        p = chromium_probe(browser, page)
    finally:
        import os
        os.remove(page)
    assert 'error' not in p, p
    assert p['n'] == int(res.times[i] - res.context_start[i] + 1)
    assert min(p['tick']) > 200  # the explained time at the right end
    assert p['left'] != [34, 34, 34]  # the context reaches the left edge
