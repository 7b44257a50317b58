"""Class Feature Pyramid outputs: the dependency graph (JSON) and a figure.

The figure has one row per pyramid level (the class, then each back-step):
the strongest nodes' tubes overlaid on a key frame, and on the right a drawing
of which kernels feed which (one column per level, edges parent -> child).
Matplotlib through ``Figure`` + ``FigureCanvasAgg`` only; files are written
atomically.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from mmxai.errors import InputError

from .colormap import as_rgb_frames, to_numpy
from .overlay import overlay_heatmap
from .video_writer import PathLike, atomic_path


def save_cfp_graph_json(path: PathLike, graph: Mapping[str, Any]) -> str:
    """Write a class dependency graph (nested dict) as JSON; returns ``path``."""
    with atomic_path(path, suffix='.json') as tmp:
        with open(tmp, 'w') as f:
            json.dump(graph, f, indent=1)
    return str(path)


def graph_levels(graph: Mapping[str, Any]) -> List[Dict[str, Dict[str, Any]]]:
    """Nodes per level: ``[{node_id: {'score', 'layer', 'kernel',
    'parents'}}]`` (a node reached from several parents is listed once, with
    its best score)."""
    levels: List[Dict[str, Dict[str, Any]]] = []

    def visit(node, parent):
        lv = node['level']
        while len(levels) <= lv:
            levels.append({})
        entry = levels[lv].setdefault(node['id'], dict(
            score=node['score'], layer=node['layer'], kernel=node['kernel'],
            parents=set()))
        entry['score'] = max(entry['score'], node['score'])
        if parent is not None:
            entry['parents'].add(parent)
        for c in node.get('children', []):
            visit(c, node['id'])
    visit(graph['root'], None)
    return levels


def _norm(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return (m - lo) / (hi - lo) if hi - lo > 1e-12 else np.zeros_like(m)


def save_pyramid_figure(path: PathLike, frames: Any, graph: Mapping[str, Any],
                        tubes: Mapping[str, Any], key_frame: Optional[int] = None,
                        nodes_per_row: int = 4, class_name: Optional[str] = None,
                        max_graph_nodes: int = 12, dpi: int = 100) -> str:
    """Pyramid figure: per level the strongest nodes' tubes on a key frame,
    and the kernel graph.

    Args:
        path: output PNG.
        frames: uint8 ``[T, H, W, 3]`` (the explained view).
        graph: one sample's graph (``ClassFeaturePyramid`` ``cfp_graph``).
        tubes: node id -> ``[T', H', W']`` tube (any scale; min-max
            normalised here; resized to the frames).
        key_frame: frame shown (default: the root tube's strongest frame).
        nodes_per_row: tubes shown per level.
        class_name: label for the title.
        max_graph_nodes: nodes per level drawn in the graph panel.
    Returns:
        ``path`` as a string.
    """
    f = as_rgb_frames(frames)
    if f.ndim != 4:
        raise InputError(f'frames must be [T, H, W, 3], got {tuple(f.shape)}')
    T = f.shape[0]
    tub = {k: to_numpy(v).astype(np.float32) for k, v in tubes.items()}
    for k, v in tub.items():
        if v.ndim != 3:
            raise InputError(f"tube '{k}' must be [T, H, W], got {v.shape}")
    levels = graph_levels(graph)
    root_id = graph['root']['id']
    if key_frame is None:
        root = tub.get(root_id)
        if root is not None and root.shape[0] == T:
            key_frame = int(np.clip(root, 0, None).sum((1, 2)).argmax())
        else:
            key_frame = T // 2
    key_frame = int(key_frame) % T

    rows, row_levels = [], []  # levels with tubes: strongest nodes first
    for i, lv in enumerate(levels):
        ranked = sorted(lv.items(), key=lambda kv: -kv[1]['score'])
        row = [(k, v) for k, v in ranked if k in tub][:nodes_per_row]
        if row:
            rows.append(row)
            row_levels.append(i)
    n_rows = max(1, len(rows))
    n_cols = max(1, nodes_per_row)

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(2.2 * n_cols + 5.5, 2.3 * n_rows + 0.6),
                 layout='constrained')
    FigureCanvasAgg(fig)
    sub_l, sub_r = fig.subfigures(1, 2, width_ratios=[2.2 * n_cols, 5.5])
    axes = np.asarray(sub_l.subplots(n_rows, n_cols, squeeze=False))
    for r in range(n_rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.axis('off')
            if r >= len(rows) or c >= len(rows[r]):
                continue
            node_id, info = rows[r][c]
            m = tub[node_id]
            t_idx = min(int(round(key_frame * m.shape[0] / T)), m.shape[0] - 1)
            img = overlay_heatmap(f[key_frame], _norm(m[t_idx]), alpha=0.5)
            ax.imshow(img)
            name = 'class' if row_levels[r] == 0 else \
                f"{_short(info['layer'])}\n#{info['kernel']}"
            ax.set_title(f"{name}  s={info['score']:.2f}", fontsize=7)
        lv = row_levels[r] if r < len(row_levels) else r
        label = 'class' if lv == 0 else f'level {lv}'
        axes[r, 0].text(-0.08, 0.5, label, transform=axes[r, 0].transAxes,
                        rotation=90, ha='right', va='center', fontsize=8)
    title = f"class {graph.get('class')}" + (f' ({class_name})' if class_name else '')
    sub_l.suptitle(f"{title}  theta={graph.get('theta')}  frame {key_frame}",
                   fontsize=9)
    _draw_graph(sub_r.subplots(1, 1), levels, max_graph_nodes)
    with atomic_path(path, suffix='.png') as tmp:
        fig.savefig(tmp, format='png', dpi=dpi)
    return str(path)


def _short(layer: str) -> str:
    parts = [p for p in layer.split('.') if p not in ('backbone', 'conv')]
    return '.'.join(parts[-3:]) if parts else layer


def _draw_graph(ax, levels, max_nodes: int) -> None:
    """Columns = levels; node size/colour = score; edges parent -> child."""
    ax.set_title('kernel dependency graph', fontsize=9)
    ax.axis('off')
    pos: Dict[str, Tuple[float, float]] = {}
    shown: List[List[Tuple[str, Dict[str, Any]]]] = []
    for x, lv in enumerate(levels):
        ranked = sorted(lv.items(), key=lambda kv: -kv[1]['score'])[:max_nodes]
        shown.append(ranked)
        n = len(ranked)
        for i, (node_id, _) in enumerate(ranked):
            pos[node_id] = (float(x), 1.0 - (i + 0.5) / max(n, 1))
    for x, ranked in enumerate(shown):
        for node_id, info in ranked:
            for p in info['parents']:
                if p in pos and pos[p][0] == x - 1:
                    (x0, y0), (x1, y1) = pos[p], pos[node_id]
                    ax.plot([x0, x1], [y0, y1], '-', color='0.6',
                            lw=0.4 + info['score'], zorder=1)
    import matplotlib
    cmap = matplotlib.colormaps['viridis']
    for x, ranked in enumerate(shown):
        for node_id, info in ranked:
            px, py = pos[node_id]
            ax.scatter([px], [py], s=30 + 90 * info['score'],
                       color=cmap(info['score']), zorder=2,
                       edgecolors='k', linewidths=0.4)
            label = 'class' if x == 0 else f"#{info['kernel']}"
            ax.annotate(label, (px, py), xytext=(4, 3),
                        textcoords='offset points', fontsize=6)
        if ranked:
            lay = 'class' if x == 0 else _short(ranked[0][1]['layer'])
            ax.text(x, 1.02, lay, ha='center', va='bottom', fontsize=6,
                    rotation=20)
    ax.set_xlim(-0.5, max(len(levels) - 0.5, 0.5))
    ax.set_ylim(-0.05, 1.12)
