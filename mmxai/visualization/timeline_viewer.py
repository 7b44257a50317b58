"""``index.html``: a self-contained viewer of a long video's timeline.

One file, no server and no network: the page's script and style are
inline, the timeline data is embedded as JSON, and the overlay videos are
the files beside it (``overlay.mp4``: with the explanation, ``plain.mp4``:
without). It shows the video, a clickable and scrubbable timeline (the
predicted class ribbon, the ground truth when given, the temporal
importance) with a cursor, the top-k classes at the cursor and an
explanation on/off switch.
"""
import html
import json
from typing import Any, Dict

__all__ = ['viewer_html']

_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title>
<style>
body{font-family:sans-serif;background:#111;color:#eee;margin:12px}
#video{max-width:100%;background:#000;display:block}
#timeline{width:100%;height:96px;cursor:pointer;display:block;margin-top:6px}
#panel{display:flex;gap:24px;margin-top:8px;flex-wrap:wrap}
#topk td{padding:1px 8px}
.swatch{display:inline-block;width:10px;height:10px;margin-right:4px}
#legend span{margin-right:12px;font-size:12px}
#drives button{margin:2px 4px 2px 0;background:#333;color:#eee;border:1px solid #666;cursor:pointer}
</style></head><body>
<h3 id="title">__TITLE__</h3>
<video id="video" controls preload="metadata" src="__VIDEO__"></video>
<canvas id="timeline" width="1200" height="96"></canvas>
<div id="panel">
 <div><label><input type="checkbox" id="explain" checked> explanation</label>
  <div id="clock">0:00</div><div id="accuracy"></div></div>
 <div><b>top-k at the cursor</b><table id="topk"></table></div>
 <div id="sequence" hidden><b id="drives-title">what drives the phase</b>
  <div id="drives"></div><div id="drives-note" style="font-size:12px;color:#aaa"></div></div>
 <div id="legend"></div>
</div>
<script id="timeline-data" type="application/json">__DATA__</script>
<script>
(function(){
const D = JSON.parse(document.getElementById('timeline-data').textContent);
const video = document.getElementById('video');
const canvas = document.getElementById('timeline');
const ctx = canvas.getContext('2d');
const W = D.windows, t0 = D.t0, t1 = D.t1;
const rgb = c => c < 0 ? 'rgb(60,60,60)' : 'rgb(' + D.colors[c % D.colors.length].join(',') + ')';
const clock = s => { s = Math.max(0, Math.round(s)); const h = Math.floor(s/3600),
  m = Math.floor(s%3600/60), x = s%60; return (h ? h + ':' + String(m).padStart(2,'0') : m) + ':' + String(x).padStart(2,'0'); };
const S = D.sequence || null;
const BASE_H = 96, SEQ_H = 56;
if (S){ canvas.height = BASE_H + SEQ_H; canvas.style.height = (BASE_H + SEQ_H) + 'px';
  document.getElementById('sequence').hidden = false; }
let cursor = t0;
function sequenceAt(t){  // the last explained time at or before t
  if (!S) return null;
  let lo = 0, hi = S.rows.length - 1, best = -1;
  while (lo <= hi){ const m = (lo + hi) >> 1;
    if (S.rows[m][0] <= t + 1e-6){ best = m; lo = m + 1; } else hi = m - 1; }
  return best < 0 ? null : S.rows[best];
}
function topMoments(row, k){
  const idx = row[4].map((q, j) => [q, j]).sort((a, b) => b[0] - a[0]).slice(0, k);
  return idx.map(([q, j]) => [(row[2] + j) * S.grid_dt, q * row[3] / 100]);
}
function xOf(t){ return (t - t0) / Math.max(1e-9, t1 - t0) * canvas.width; }
function tOf(x){ return t0 + x / canvas.width * (t1 - t0); }
function draw(){
  const w = canvas.width, h = S ? BASE_H : canvas.height;
  ctx.fillStyle = '#222'; ctx.fillRect(0, 0, w, canvas.height);
  const rows = D.gt ? 3 : 2, rh = h / rows;
  for (const win of W){
    const r = win.ribbon_s || [win.start_s, win.end_s];
    const x0 = xOf(r[0]), x1 = Math.max(x0 + 1, xOf(r[1]));
    ctx.globalAlpha = win.pred < 0 ? 1 : 0.35 + 0.65 * win.prob;
    ctx.fillStyle = rgb(win.pred); ctx.fillRect(x0, 0, x1 - x0, rh - 2);
    ctx.globalAlpha = 1;
    const v = (win.importance || 0) / (D.max_importance || 1);
    ctx.fillStyle = '#e33'; ctx.fillRect(x0, h - v * (rh - 2), x1 - x0, v * (rh - 2));
  }
  if (D.gt){
    for (const seg of D.gt){
      const x0 = xOf(seg[0]), x1 = Math.max(x0 + 1, xOf(seg[1]));
      ctx.fillStyle = rgb(seg[2]); ctx.fillRect(x0, rh, x1 - x0, rh - 2);
    }
  }
  if (S){
    const y0 = BASE_H + 2, mid = y0 + (SEQ_H - 4) / 2, half = (SEQ_H - 4) / 2 - 1;
    ctx.fillStyle = '#555'; ctx.fillRect(0, mid, w, 1);
    const row = sequenceAt(cursor);
    if (row){
      const dt = S.grid_dt, a = row[2], q = row[4];
      // a context under ZOOM_BELOW of the span: stretched over the row
      const zoom = q.length * dt < S.zoom_below * (t1 - t0) && w >= q.length;
      const xs = zoom ? (j => j / q.length * w) : (j => xOf((a + j - 0.5) * dt));
      const xa = xs(0), xb = xs(q.length);
      ctx.fillStyle = '#3a3a3a'; ctx.fillRect(xa, y0, xb - xa, SEQ_H - 4);
      if (zoom){ ctx.fillStyle = '#bbb'; ctx.font = '11px sans-serif';
        ctx.fillText('zoomed: ' + clock(a * dt) + ' - ' + clock(row[0]), 4, y0 + 11); }
      for (let j = 0; j < q.length; j++){
        const x0 = xs(j), x1 = Math.max(x0 + 1, xs(j + 1));
        const v = q[j] / 100;
        ctx.fillStyle = v >= 0 ? '#e33' : '#37e';
        if (v >= 0) ctx.fillRect(x0, mid - v * half, x1 - x0, v * half);
        else ctx.fillRect(x0, mid + 1, x1 - x0, -v * half);
      }
      const xt = zoom ? xs(q.length - 0.5) : xOf(row[0]);
      ctx.fillStyle = '#fff'; ctx.fillRect(xt - 1, y0, 2, SEQ_H - 4);
    }
  }
  const x = xOf(cursor);
  ctx.fillStyle = '#000'; ctx.fillRect(x - 2, 0, 5, h);
  ctx.fillStyle = '#fff'; ctx.fillRect(x - 1, 0, 3, h);
}
function updateSequence(){
  if (!S) return;
  const row = sequenceAt(cursor), box = document.getElementById('drives');
  box.innerHTML = '';
  const title = document.getElementById('drives-title');
  if (!row){ title.textContent = 'what drives the phase: first explained at ' + clock(S.rows.length ? S.rows[0][0] : t0); return; }
  title.textContent = 'what drives ' + D.classes[row[1]] + ' at ' + clock(row[0]) + ' (' + S.method + ')';
  for (const [ts, v] of topMoments(row, 3)){
    const b = document.createElement('button');
    b.textContent = clock(ts) + '  ' + v.toPrecision(3);
    b.addEventListener('click', () => window.mmxaiTimeline.seek(ts));
    box.appendChild(b);
  }
  document.getElementById('drives-note').textContent = S.explained > S.rows.length ?
    S.rows.length + ' of ' + S.explained + ' explained times here; all in sequence/importance.npz' : '';
}
function windowAt(t){
  let best = null, bd = Infinity;
  for (const win of W){
    if (win.pred < 0) continue;
    const c = win.at_s !== undefined ? win.at_s : (win.start_s + win.end_s) / 2;
    const d = Math.abs(c - t);
    if (t >= win.start_s && t <= win.end_s && d < bd){ best = win; bd = d; }
  }
  return best;
}
function update(){
  document.getElementById('clock').textContent = clock(cursor) + ' / ' + clock(t1);
  const win = windowAt(cursor), table = document.getElementById('topk');
  table.innerHTML = '';
  if (win){
    for (const [c, p] of win.topk){
      const tr = document.createElement('tr');
      tr.innerHTML = '<td><span class="swatch" style="background:' + rgb(c) + '"></span>' +
        D.classes[c] + '</td><td>' + p.toFixed(3) + '</td>';
      table.appendChild(tr);
    }
  }
  updateSequence();
  draw();
}
function seek(ev){
  const r = canvas.getBoundingClientRect();
  const t = tOf((ev.clientX - r.left) / r.width * canvas.width);
  cursor = Math.min(t1, Math.max(t0, t));
  video.currentTime = cursor - t0;
  update();
}
let dragging = false;
canvas.addEventListener('mousedown', e => { dragging = true; seek(e); });
window.addEventListener('mousemove', e => { if (dragging) seek(e); });
window.addEventListener('mouseup', () => { dragging = false; });
canvas.addEventListener('click', seek);
video.addEventListener('timeupdate', () => { cursor = t0 + video.currentTime; update(); });
document.getElementById('explain').addEventListener('change', e => {
  const t = video.currentTime, playing = !video.paused;
  video.src = e.target.checked ? D.video : (D.plain_video || D.video);
  video.addEventListener('loadedmetadata', function once(){
    video.removeEventListener('loadedmetadata', once);
    video.currentTime = t; if (playing) video.play();
  });
});
if (!D.plain_video) document.getElementById('explain').disabled = true;
if (D.accuracy !== null && D.accuracy !== undefined)
  document.getElementById('accuracy').textContent = 'frame accuracy ' + (100 * D.accuracy).toFixed(1) + ' %';
const legend = document.getElementById('legend');
for (const c of D.shown_classes){
  const s = document.createElement('span');
  s.innerHTML = '<span class="swatch" style="background:' + rgb(c) + '"></span>' + D.classes[c];
  legend.appendChild(s);
}
window.mmxaiTimeline = {data: D, sequenceAt: sequenceAt, topMoments: topMoments,
  seek: t => { cursor = t; video.currentTime = t - t0; update(); }};
update();
})();
</script></body></html>
"""


def viewer_html(data: Dict[str, Any]) -> str:
    """The page for ``data``: ``title``, ``video`` / ``plain_video``
    (relative paths), ``t0``/``t1`` (seconds), ``classes``, ``colors``
    (``[K][3]``), ``windows`` (``start_s``, ``end_s``, ``pred``, ``prob``,
    ``importance``, ``topk`` ``[[class, p]]``; optional ``at_s``, the time
    the prediction is about, default the centre, and ``ribbon_s``
    ``[a, b]``, the stretch its ribbon colours, default the span), ``max_importance``, ``gt``
    (``[[start_s, end_s, class]]`` or None), ``accuracy``,
    ``shown_classes``; optional ``sequence``
    (:meth:`~mmxai.outputs.SequenceTrack.viewer_data`: a row under the
    timeline with the importance of each moment to the phase at the last
    explained time at or before the cursor, and its top moments as
    buttons that seek there)."""
    text = json.dumps(data, separators=(',', ':'))
    text = text.replace('</', '<\\/')  # never closes the script element
    title = html.escape(str(data.get('title', 'mmxai timeline')))
    return (_TEMPLATE.replace('__TITLE__', title)
            .replace('__VIDEO__', html.escape(str(data.get('video', ''))))
            .replace('__DATA__', text))
