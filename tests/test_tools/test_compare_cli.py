"""tools/compare.py: one-line errors before the heavy imports with nothing
written, a run on the bundled model, and index.html in headless Chromium
(skipped with the reason where it is not installed)."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
from mmxai.testing.browser import (chromium_probe, chromium_screenshot,
                                  find_chromium)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLI = osp.join(ROOT, 'tools', 'compare.py')
CFG = osp.join(ROOT, 'configs', 'demo', 'i3d_tiny_synthetic.py')
CKPT = osp.join(ROOT, 'demo', 'i3d_tiny_synthetic.pth')
VIDEO = osp.join(ROOT, 'demo', 'demo.mp4')

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


@pytest.mark.parametrize('argv,text', [
    ([CFG, CKPT, '/no/such.mp4'], 'error: video not found'),
    ([CFG, VIDEO, VIDEO], 'is a video, not a checkpoint'),
    ([CFG, CKPT, VIDEO, '--target', 'jump'], "--target: 'pred' or a class"),
    ([CFG, CKPT, VIDEO, '--target', '9'], 'error:'),
    ([CFG, CKPT, VIDEO, '--budget', 'huge'], 'error: argument --budget'),
])
def test_bad_input_one_line_nothing_written(tmp_path, argv, text):
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-c', PROBE.format(cli=CLI, argv=argv + [
            '--out-dir', str(out)])], capture_output=True, text=True,
        cwd=str(tmp_path), timeout=120)
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('error:'), proc.stderr
    assert text in err[0]
    assert "HEAVY [] CODE 2" in proc.stdout, proc.stdout
    assert not out.exists()


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp('cmp') / 'out'
    proc = subprocess.run(
        [sys.executable, CLI, CFG, CKPT, VIDEO, '--methods', 'gradcam',
         'saliency_tubes', 'attention_rollout', '--out-dir', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc.stdout


@pytest.mark.sweep  # a second full run (the API test covers the numbers)
def test_cli_run(run):
    out, stdout = run
    assert 'recommendation:' in stdout and 'most faithful here:' in stdout
    assert 'attention_rollout: n/a' in stdout
    s = json.load(open(out / 'compare.json'))
    assert set(s['methods']) == {'gradcam', 'saliency_tubes'}
    assert s['budget'] == 'fast'
    for name in ('compare.md', 'agreement.png', 'index.html',
                 'clips/00/overlay.mp4', 'clips/00/montage.png'):
        assert (out / name).stat().st_size > 0


PROBE_JS = """<script>
window.addEventListener('load', () => {
  const C = window.mmxaiCompare;
  C.sort('deletion');
  const first = () => document.querySelector('#metrics tbody tr td').textContent;
  const a = first(); C.sort('deletion'); const b = first();
  const vids = C.videos();
  const report = (extra) => { const p = document.createElement('pre');
    p.id = 'probe'; p.textContent = JSON.stringify(Object.assign({
      videos: vids.length, rows: document.querySelectorAll('#metrics tbody tr').length,
      first_asc: a, first_desc: b, rec: document.getElementById('rec').textContent,
      sizes: vids.map(v => [v.videoWidth, v.videoHeight, v.duration]),
      times: vids.map(v => v.currentTime)}, extra));
    document.body.appendChild(p); };
  const go = () => { C.seekTo(0.5);
    vids[vids.length - 1].addEventListener('seeked', () => report({}), {once: true}); };
  const v = vids[vids.length - 1];
  if (v.readyState >= 1) go(); else v.addEventListener('loadedmetadata', go);
  v.addEventListener('error', () => report({error: 'video error'}));
});
</script></body>"""


@pytest.mark.sweep  # needs the run; .ci/run runs -m sweep with chromium
def test_viewer_in_headless_chromium(run, tmp_path):
    from mmxai.visualization.timeline import browser_codec_available
    browser = find_chromium()
    if browser is None:
        pytest.skip('no chromium: .ci/run installs it (apt-get install '
                    'chromium)')
    if not browser_codec_available():
        pytest.skip('no H.264 writer (pip install imageio-ffmpeg): '
                    'browsers do not play mp4v')
    out, _ = run
    page = (out / 'index.html').read_text()
    assert 'http' not in page.replace('http-equiv', '')  # no network
    probe = out / 'probe.html'
    probe.write_text(page.replace('</body>', PROBE_JS))
    p = chromium_probe(browser, probe)
    assert 'error' not in p, p
    assert p['videos'] == 2 and p['rows'] == 3  # two methods + random map
    assert p['first_asc'] != p['first_desc']  # sorting works
    assert 'most faithful here' in p['rec']
    assert all(s[0] > 0 and s[2] > 0 for s in p['sizes'])
    assert max(p['times']) - min(p['times']) < 0.2  # synced
    shot = tmp_path / 'viewer.png'
    chromium_screenshot(browser, out / 'index.html', shot, size='1280,1400')
    assert shot.exists() and shot.stat().st_size > 10000
    keep = os.environ.get('MMXAI_VIEWER_SCREENSHOT')
    if keep:  # e.g. to look at it
        shutil.copy(shot, keep)
