"""Pictures of a phase-sequence explanation (no model): ``importance.png``
(phase ribbons over the video, then each explained time's importance over
its context) and ``frames.png`` (CAMs on each time's top frames).

``res`` is a :class:`mmxai.apis.PhaseSequenceExplanation` (read only:
``importance``, ``times``, ``context_start``, ``frame_inds``, ``fps``,
``pred``, ``probs``, ``gt``, ``targets``, ``records``, ``cams``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mmxai.fileio import PathLike

from .timeline import NO_DATA, class_colors, format_clock

__all__ = ['plot_phase_sequence', 'plot_frame_cams', 'MAX_PANELS']

#: Explained times drawn (the rest are in the arrays and the CSV).
MAX_PANELS = 12
_METHOD_COLORS = dict(occlusion='tab:red', ig='tab:blue',
                      shapley='tab:green')


def _rgba(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels, np.int64)
    k = len(colors)
    out = np.ones((1, len(labels), 4))
    ok = labels >= 0
    out[0, ok, :3] = colors[np.clip(labels[ok], 0, k - 1)] / 255.0
    out[0, ~ok, :3] = np.array(NO_DATA) / 255.0
    return out


def _panels(n: int) -> np.ndarray:
    """Which explained times get a panel (evenly spread)."""
    if n <= MAX_PANELS:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, MAX_PANELS)).astype(int))


def plot_phase_sequence(path: PathLike, res: Any, dpi: int = 100) -> str:
    """``importance.png`` of ``res``; returns ``path``."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from .figures import _save_png
    names = list(res.class_names)
    k = len(names)
    colors = class_colors(k)
    fps = float(res.fps)
    secs = np.asarray(res.frame_inds, np.float64) / fps
    step = secs[1] - secs[0] if len(secs) > 1 else 1.0
    edges_all = (secs[0], secs[-1] + step)
    shown = _panels(len(res.times))
    has_gt = res.gt is not None
    ncol = 1 if len(shown) <= 4 else 2
    nrow = int(np.ceil(len(shown) / ncol)) if len(shown) else 0
    fig = plt.figure(figsize=(14, 1.9 + 2.1 * nrow))
    top_h = 0.9 if has_gt else 0.55
    gs = fig.add_gridspec(1 + max(nrow, 0), ncol,
                          height_ratios=[top_h] + [1.6] * nrow,
                          hspace=0.75, wspace=0.12)
    ax = fig.add_subplot(gs[0, :])
    rib = _rgba(res.pred, colors)
    label = 'predicted'
    if has_gt:
        rib = np.concatenate([rib, _rgba(res.gt, colors)])
        label = 'predicted\nground truth'
    ax.imshow(rib, aspect='auto', interpolation='nearest',
              extent=(edges_all[0] / 60, edges_all[1] / 60, rib.shape[0], 0))
    ax.set_yticks([])
    ax.set_ylabel(label, rotation=0, ha='right', va='center', fontsize=8)
    if has_gt:
        ax.axhline(1, color='w', lw=1.5)
    for j, i in enumerate(shown):
        t = secs[int(res.times[i])] / 60
        ax.axvline(t, color='k', lw=1)
        ax.text(t, 1.02, str(j + 1), ha='center', va='bottom', fontsize=7,
                fontweight='bold', transform=ax.get_xaxis_transform())
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
        lambda x, _: format_clock(x * 60)))
    ax.tick_params(labelsize=7)
    acc = res.accuracy
    ctx = res.settings.get('context', res.context)
    head = (f'{res.settings.get("video", res.video).split("/")[-1]}: '
            f'{len(res.times)} explained times, context {ctx} '
            f'({res.settings.get("context_frames", "?")} frames, receptive '
            f'field {res.receptive_field}), grid {fps / res.interval:g} fps')
    if acc is not None:
        head += f', frame accuracy {acc:.1%}'
    if len(shown) < len(res.times):
        head += f'; {len(shown)} of them drawn'
    ax.set_title(head, fontsize=9, pad=12)
    methods = list(res.importance)
    for j, i in enumerate(shown):
        ax = fig.add_subplot(gs[1 + j // ncol, j % ncol])
        t = int(res.times[i])
        a = int(res.context_start[i])
        x = secs[a:t + 1]
        pad = max(step, 0.06 * (x[-1] - x[0] + step))
        for m in methods:
            row = np.asarray(res.importance[m][i, a:t + 1], np.float64)
            top = np.abs(row).max()
            ax.plot(x, row / top if top > 0 else row, '-', lw=1.2,
                    marker='.' if len(x) <= 64 else None, ms=3,
                    color=_METHOD_COLORS.get(m), label=f'{m} (max '
                    f'{top:.3g})')
        ax.axhline(0, color='0.6', lw=0.6)
        ax.axvline(secs[t], color='k', lw=1, ls='--')
        ax.axvspan(secs[t] + step / 2, secs[t] + pad + step, color='0.9')
        lo, hi = x[0] - pad, secs[t] + pad + step
        ax.set_xlim(lo, hi)
        ax.set_ylim(-1.15, 1.6)
        # the phase ribbons of the context, under the curves
        sel = slice(max(0, a - int(pad / step) - 1),
                    min(len(secs), t + int(pad / step) + 2))
        e0, e1 = secs[sel][0] - step / 2, secs[sel][-1] + step / 2
        ax.imshow(_rgba(res.pred[sel], colors), aspect='auto',
                  interpolation='nearest', extent=(e0, e1, 1.25, 1.05),
                  zorder=0)
        if has_gt:
            ax.imshow(_rgba(res.gt[sel], colors), aspect='auto',
                      interpolation='nearest', extent=(e0, e1, 1.5, 1.3),
                      zorder=0)
        ax.set_xlim(lo, hi)
        ax.text(lo, 1.15, 'pred ', ha='right', va='center', fontsize=6)
        if has_gt:
            ax.text(lo, 1.4, 'gt ', ha='right', va='center', fontsize=6)
        rec = res.records[i]
        gt_txt = '' if rec.get('gt') is None or rec['gt'] < 0 else \
            f', gt {names[rec["gt"]] if rec["gt"] < k else rec["gt"]}'
        ax.set_title(f'{j + 1}: t = {format_clock(secs[t])}  target '
                     f'{rec["target_name"]} (p={rec["prob"]:.2f}){gt_txt}',
                     fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _, hi=hi: format_clock(v) if hi >= 120 else
            f'{v:.0f}'))
        ax.set_yticks([-1, 0, 1])
        if j == 0:
            ax.legend(fontsize=6, loc='lower left', ncol=len(methods),
                      frameon=False)
    used = sorted(set(np.unique(res.pred).tolist()) | (
        set(np.unique(res.gt).tolist()) if has_gt else set()))
    handles = [Patch(color=colors[c] / 255.0, label=names[c])
               for c in used if 0 <= c < k][:20]
    fig.legend(handles=handles, loc='upper center', ncol=min(7, max(1, len(
        handles))), fontsize=8, frameon=False, bbox_to_anchor=(0.5, 1.0))
    fig.text(0.5, 0.005, 'each panel: importance of each grid frame of the '
             'context to the target\'s score at t (dashed line), scaled '
             'by its largest |value| (in the legend); ribbons: predicted'
             + (' (lower), ground truth (upper)' if has_gt else '') +
             '; grey: after t (unseen); x: time (s or m:ss)', ha='center', va='bottom',
             fontsize=7)
    height = fig.get_size_inches()[1]
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.95 / height,
                        bottom=0.5 / height)
    try:
        return _save_png(fig, path, dpi)
    finally:
        plt.close(fig)


def plot_frame_cams(path: PathLike, res: Any, dpi: int = 100) -> str:
    """``frames.png``: a row per explained time, its top frames with
    their CAM overlaid (``res.cams``); returns ``path``."""
    import matplotlib
    matplotlib.use('Agg', force=False)
    import matplotlib.pyplot as plt

    from .figures import _save_png
    from .overlay import overlay_heatmap
    shown = _panels(len(res.cams))
    cols = max([len(res.cams[i]) for i in shown] + [1])
    fig, axes = plt.subplots(len(shown), cols, squeeze=False,
                             figsize=(2.2 * cols + 0.5, 2.4 * len(shown)))
    fps = float(res.fps)
    for r, i in enumerate(shown):
        t = int(res.times[i])
        for c in range(cols):
            ax = axes[r, c]
            ax.axis('off')
            if c >= len(res.cams[i]):
                continue
            s, frame, cam, value = res.cams[i][c]
            img = overlay_heatmap(frame[None], cam[None], alpha=0.5)[0]
            ax.imshow(img)
            ax.set_title(f't={format_clock(res.frame_inds[t] / fps)} '
                         f'frame {format_clock(res.frame_inds[s] / fps)}\n'
                         f'importance {value:.3g}', fontsize=7)
    fig.suptitle('CAMs (gradient x activation, frame CNN, score at t)\non '
                 'the top frames of each explained time', fontsize=8)
    fig.tight_layout()
    try:
        return _save_png(fig, path, dpi)
    finally:
        plt.close(fig)
