"""Pictures of a method comparison (``tools/compare.py``): side-by-side
tiles (overlay video frames and a montage), the agreement heat map and the
``index.html`` viewer. Arrays in, files out; no model.

Colour scale: one per kind, the same for every tile of that kind. Maps of
non-negative methods are in [0, 1] (min-max per view) on ``jet``; signed
maps (:func:`~mmxai.visualization.is_signed` of the raw map) in [-1, 1]
(``raw / P99(|raw|)``, clipped) on ``RdBu_r`` centred at 0. The montage has
one colour bar per kind present.
"""
import html
import textwrap
import json
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .colormap import DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, as_rgb_frames
from .figures import select_frames
from .overlay import draw_label_panel, overlay_heatmap, upscale_frames

__all__ = ['tile_frames', 'grid_frames', 'save_comparison_montage',
           'plot_agreement', 'compare_viewer_html']


def tile_frames(frames: np.ndarray, maps: np.ndarray, signed: bool,
                lines: Sequence[Sequence[str]], valid: Optional[np.ndarray] = None,
                alpha: float = 0.5, size: int = 192) -> np.ndarray:
    """One method's tile per frame: the overlay (``jet`` or, ``signed``,
    ``RdBu_r``) with a label panel (``lines``: T lists of strings) above.
    Returns uint8 ``[T, H', W', 3]``, the shorter side ``size``."""
    drawn = overlay_heatmap(as_rgb_frames(frames), maps, alpha=alpha,
                            cmap=DEFAULT_SIGNED_CMAP if signed else DEFAULT_CMAP,
                            valid_mask=valid, signed=signed)
    drawn = upscale_frames(drawn, size)
    return draw_label_panel(drawn, [list(x) for x in lines], position='top',
                            min_size=size)


def grid_frames(tiles: Sequence[np.ndarray], cols: Optional[int] = None,
                pad: int = 4) -> np.ndarray:
    """Tiles ``[T, h, w, 3]`` (equal sizes) side by side, ``cols`` per row
    (default: up to 4), on a dark background; even output size."""
    n = len(tiles)
    cols = cols or min(n, 4)
    rows = -(-n // cols)
    t, h, w = tiles[0].shape[:3]
    H = rows * h + (rows + 1) * pad
    W = cols * w + (cols + 1) * pad
    H += H % 2
    W += W % 2
    out = np.full((t, H, W, 3), 24, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        out[:, y:y + h, x:x + w] = tile[:, :h, :w]
    return out


def save_comparison_montage(path: str, frames: np.ndarray,
                            rows: Sequence[Dict[str, Any]],
                            frame_indices: Optional[Sequence[int]] = None,
                            num_frames: int = 6, alpha: float = 0.5,
                            title: str = '') -> str:
    """A PNG: one row per method (``rows``: ``name``, ``maps [T, H, W]``,
    ``signed``, ``valid`` or None, ``label`` e.g. ``'gradcam 0.4 s'``), the
    same ``num_frames`` key frames in every row (the frame number above each
    column), a colour bar per kind of scale present."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from ..fileio import atomic_path
    frames = as_rgb_frames(frames)
    sel = select_frames(len(frames), num_frames)
    n, k = len(rows), len(sel)
    h, w = frames.shape[1:3]
    cw = 1.6
    fig_h = cw * h / w * n + 0.9
    fig, axes = plt.subplots(n, k, figsize=(cw * k + 2.6, fig_h),
                             squeeze=False)
    for r, row in enumerate(rows):
        drawn = overlay_heatmap(
            frames[sel], np.asarray(row['maps'])[sel], alpha=alpha,
            cmap=DEFAULT_SIGNED_CMAP if row['signed'] else DEFAULT_CMAP,
            valid_mask=None if row.get('valid') is None else
            np.asarray(row['valid'])[sel], signed=row['signed'])
        for c in range(k):
            ax = axes[r, c]
            ax.imshow(drawn[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                fi = sel[c] if frame_indices is None else frame_indices[sel[c]]
                ax.set_title(f'frame {int(fi)}', fontsize=8)
            if c == 0:
                ax.set_ylabel(row['label'], fontsize=8, rotation=0,
                              ha='right', va='center')
    kinds = [s for s in (False, True) if any(bool(x['signed']) == s
                                             for x in rows)]
    right = 0.86 if len(kinds) else 0.98
    fig.subplots_adjust(left=0.2, right=right,
                        top=1 - (0.6 if title else 0.35) / fig_h,
                        bottom=0.1 / fig_h, wspace=0.04, hspace=0.08)
    for j, signed in enumerate(kinds):
        cax = fig.add_axes([right + 0.02 + j * 0.06, 0.1, 0.015, 0.75])
        sm = ScalarMappable(Normalize(-1 if signed else 0, 1),
                            DEFAULT_SIGNED_CMAP if signed else DEFAULT_CMAP)
        cb = fig.colorbar(sm, cax=cax)
        cb.set_label('signed: raw / P99|raw|' if signed else
                     'min-max per view', fontsize=7)
        cb.ax.tick_params(labelsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100)
    plt.close(fig)
    return str(path)


def plot_agreement(path: str, matrix: np.ndarray, names: Sequence[str],
                   title: str = 'agreement: Spearman rank correlation') -> str:
    """Heat map PNG of a method x method correlation matrix in [-1, 1]
    (``RdBu_r``, 0 white), the value written in each cell (NaN: blank)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from ..fileio import atomic_path
    m = np.asarray(matrix, float)
    n = len(names)
    size = max(3.5, 1.6 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(np.ma.masked_invalid(m), cmap='RdBu_r', vmin=-1, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(names, rotation=45, ha='right', fontsize=8)
    ax.set_yticklabels(names, fontsize=8)
    for i in range(n):
        for j in range(n):
            if np.isfinite(m[i, j]):
                ax.text(j, i, f'{m[i, j]:.2f}', ha='center', va='center',
                        fontsize=7,
                        color='white' if abs(m[i, j]) > 0.6 else 'black')
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(textwrap.fill(title, 40 + 4 * n), fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format='png', dpi=100)
    plt.close(fig)
    return str(path)


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>__TITLE__</title>
<style>
body{font-family:sans-serif;background:#111;color:#eee;margin:12px}
#videos{display:flex;flex-wrap:wrap;gap:8px}
.tile{background:#000;padding:2px}
.tile video{width:240px;display:block}
.tile div{font-size:12px;text-align:center}
table{border-collapse:collapse;margin-top:10px;font-size:13px}
th,td{border:1px solid #444;padding:2px 8px;text-align:right}
th{cursor:pointer;background:#222} td:first-child,th:first-child{text-align:left}
#rec{margin:10px 0;padding:8px;background:#1d2a1d;white-space:pre-wrap}
#controls{margin:8px 0} img{max-width:100%;background:#fff}
.na{color:#aaa;font-size:12px}
</style></head><body>
<h3>__TITLE__</h3>
<div id="rec"></div>
<div id="controls"><select id="clip"></select>
 <button id="play">play</button> <input id="seek" type="range" min="0" max="1000" value="0" style="width:400px">
 <span id="clock">0.00 s</span></div>
<div id="videos"></div>
<table id="metrics"><thead></thead><tbody></tbody></table>
<div id="na" class="na"></div>
<h4>agreement</h4><img id="agreement" alt="agreement">
<h4>montage</h4><img id="montage" alt="montage">
<script id="compare-data" type="application/json">__DATA__</script>
<script>
(function(){
const D = JSON.parse(document.getElementById('compare-data').textContent);
const box = document.getElementById('videos'), sel = document.getElementById('clip');
const seek = document.getElementById('seek'), clock = document.getElementById('clock');
let videos = [], sortKey = null, sortDir = 1;
D.clips.forEach((c, i) => { const o = document.createElement('option');
  o.value = i; o.textContent = c.name; sel.appendChild(o); });
function master(){ return videos[0]; }
function showClip(i){
  const c = D.clips[i]; box.innerHTML = ''; videos = [];
  for (const t of c.tiles){
    const d = document.createElement('div'); d.className = 'tile';
    const v = document.createElement('video'); v.src = t.video; v.muted = true;
    v.preload = 'auto'; v.loop = false; v.dataset.method = t.method;
    const l = document.createElement('div'); l.textContent = t.label;
    d.appendChild(v); d.appendChild(l); box.appendChild(d); videos.push(v);
  }
  if (videos.length) master().addEventListener('timeupdate', () => {
    const m = master(); clock.textContent = m.currentTime.toFixed(2) + ' s';
    if (m.duration) seek.value = Math.round(1000 * m.currentTime / m.duration);
    for (const v of videos.slice(1)) if (Math.abs(v.currentTime - m.currentTime) > 0.15) v.currentTime = m.currentTime;
  });
  document.getElementById('agreement').src = c.agreement || D.agreement;
  document.getElementById('montage').src = c.montage;
}
function seekTo(frac){
  const m = master(); if (!m || !m.duration) return;
  const t = frac * m.duration; for (const v of videos) v.currentTime = t;
  clock.textContent = t.toFixed(2) + ' s';
}
document.getElementById('play').addEventListener('click', () => {
  const m = master(); if (!m) return;
  if (m.paused) videos.forEach(v => v.play()); else videos.forEach(v => v.pause());
});
seek.addEventListener('input', () => seekTo(seek.value / 1000));
sel.addEventListener('change', () => showClip(+sel.value));
function fmt(x){ return (x === null || x === undefined) ? '-' : (typeof x === 'number' ? (Math.abs(x) >= 100 ? x.toFixed(0) : x.toFixed(3)) : String(x)); }
function table(){
  const head = document.querySelector('#metrics thead'), body = document.querySelector('#metrics tbody');
  head.innerHTML = ''; body.innerHTML = '';
  const tr = document.createElement('tr');
  for (const col of D.columns){
    const th = document.createElement('th'); th.textContent = col.label + (sortKey === col.key ? (sortDir > 0 ? ' ▲' : ' ▼') : '');
    th.title = col.help || ''; th.dataset.key = col.key;
    th.addEventListener('click', () => { sortDir = sortKey === col.key ? -sortDir : 1; sortKey = col.key; table(); });
    tr.appendChild(th);
  }
  head.appendChild(tr);
  const rows = D.rows.slice();
  if (sortKey) rows.sort((a, b) => { const x = a[sortKey], y = b[sortKey];
    if (x === y) return 0; if (x === null || x === undefined) return 1; if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * sortDir; });
  for (const r of rows){
    const tr = document.createElement('tr');
    for (const col of D.columns){ const td = document.createElement('td'); td.textContent = fmt(r[col.key]); tr.appendChild(td); }
    body.appendChild(tr);
  }
}
document.getElementById('rec').textContent = D.recommendation.join('\n');
document.getElementById('na').textContent = D.not_applicable.map(x => x.method + ': n/a (' + x.reason + ')').join('\n');
table(); showClip(0);
window.mmxaiCompare = {data: D, seekTo: seekTo, sort: k => { sortDir = sortKey === k ? -sortDir : 1; sortKey = k; table(); },
  videos: () => videos};
})();
</script></body></html>
"""


def compare_viewer_html(data: Dict[str, Any]) -> str:
    """The comparison viewer for ``data``: ``title``, ``recommendation``
    (lines), ``columns`` (``key``, ``label``, ``help``), ``rows`` (one dict
    per method), ``not_applicable`` (``method``, ``reason``), ``clips``
    (``name``, ``montage``, ``tiles``: ``method``, ``label``, ``video``
    relative paths), ``agreement`` (a relative PNG path). One file: script,
    style and data inline; videos and images are the files beside it."""
    text = json.dumps(data, separators=(',', ':'))
    text = text.replace('</', '<\\/')
    title = html.escape(str(data.get('title', 'mmxai comparison')))
    return _TEMPLATE.replace('__TITLE__', title).replace('__DATA__', text)
