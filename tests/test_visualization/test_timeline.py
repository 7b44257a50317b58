"""Timeline pictures (ribbon, cursor, timeline.png for 90 minutes), the
streaming MP4 writer, and index.html in a real headless Chromium."""
import shutil

import cv2
import numpy as np
import pytest

from mmxai.fileio import atomic_path
from mmxai.testing.browser import chromium_probe, find_chromium
from mmxai.visualization.timeline import (StreamVideoWriter,
                                          browser_codec_available,
                                          class_colors, draw_cursor_strip,
                                          plot_timeline, ribbon_image)
from mmxai.visualization.timeline_viewer import viewer_html


def test_ribbon_and_cursor():
    colors = class_colors(3)
    img = ribbon_image(np.array([0, 0, 1, 2, -1]), 50, 4, colors)
    assert img.shape == (4, 50, 3)
    assert (img[0, 0] == colors[0]).all() and (img[0, 25] == colors[1]).all()
    assert (img[0, 49] == 60).all()  # no data
    cur = draw_cursor_strip(img, 0.5)
    assert (cur[:, 24] == 255).all() and (cur[:, 10] == img[:, 10]).all()


def test_plot_timeline_90_minutes(tmp_path):
    n = 90 * 60 // 2  # a window every 2 s
    t = np.arange(n) * 2.0 + 1
    phase = np.minimum(t // 800, 6).astype(int)
    rng = np.random.default_rng(0)
    pred = np.where(rng.random(n) < 0.85, phase, rng.integers(0, 7, n))
    path = plot_timeline(tmp_path / 'timeline.png', t, pred,
                         rng.uniform(0.4, 1, n), rng.random(n),
                         [f'phase {i}' for i in range(7)], gt=phase,
                         gt_times=t, title='90 minutes', accuracy=0.85)
    img = cv2.imread(path)
    assert img.shape[1] == 1400 and img.shape[0] > 400


def test_stream_video_writer(tmp_path):
    path = tmp_path / 'v.mp4'
    with atomic_path(path) as tmp:
        with StreamVideoWriter(tmp, 5, (48, 64)) as w:
            for k in range(12):
                w.write(np.full((48, 64, 3), k * 20, np.uint8))
    cap = cv2.VideoCapture(str(path))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    cap.release()


PROBE = """<script>
window.addEventListener('load', () => {
  const v = document.getElementById('video');
  const c = document.getElementById('timeline');
  const report = (extra) => { const p = document.createElement('pre');
    p.id = 'probe'; p.textContent = JSON.stringify(Object.assign({
      canvas: [c.width, c.clientWidth, c.clientHeight],
      video: [v.videoWidth, v.videoHeight, v.duration],
      time: v.currentTime, rows: document.querySelectorAll('#topk tr').length
    }, extra)); document.body.appendChild(p); };
  const go = () => { const r = c.getBoundingClientRect();
    c.dispatchEvent(new MouseEvent('click', {clientX: r.left + r.width * 0.75,
      clientY: r.top + 5, bubbles: true}));
    v.addEventListener('seeked', () => report({}), {once: true}); };
  if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go);
  v.addEventListener('error', () => report({error: 'video error'}));
});
</script></body>"""


def test_viewer_in_headless_chromium(tmp_path):
    browser = find_chromium()
    if browser is None:
        pytest.skip('no chromium: .ci/run installs it (apt-get install '
                    'chromium)')
    if not browser_codec_available():
        pytest.skip('no H.264 writer (pip install imageio-ffmpeg): '
                    'browsers do not play mp4v')
    with atomic_path(tmp_path / 'overlay.mp4') as tmp:
        with StreamVideoWriter(tmp, 5, (48, 64)) as w:
            for k in range(50):  # 10 s
                w.write(np.full((48, 64, 3), k * 5, np.uint8))
    shutil.copy(tmp_path / 'overlay.mp4', tmp_path / 'plain.mp4')
    windows = [dict(start_s=2.0 * i, end_s=2.0 * i + 2, pred=i % 2,
                    prob=0.9, importance=i, topk=[[i % 2, 0.9],
                                                  [1 - i % 2, 0.1]])
               for i in range(5)]
    page = viewer_html(dict(
        title='test', video='overlay.mp4', plain_video='plain.mp4', t0=0.0,
        t1=10.0, classes=['a', 'b'], colors=class_colors(2).tolist(),
        windows=windows, max_importance=4, gt=[[0, 5, 0], [5, 10, 1]],
        accuracy=0.5, shown_classes=[0, 1]))
    assert 'http' not in page.replace('http-equiv', '')  # no network
    (tmp_path / 'index.html').write_text(page.replace('</body>', PROBE))
    probe = chromium_probe(browser, tmp_path / 'index.html')
    assert 'error' not in probe, probe
    assert probe['canvas'][1] > 100 and probe['canvas'][2] > 50
    assert probe['video'][:2] == [64, 48] and abs(probe['video'][2] - 10) < .5
    assert abs(probe['time'] - 7.5) < 0.5  # the click seeked to 75 %
    assert probe['rows'] == 2  # top-k at the cursor
