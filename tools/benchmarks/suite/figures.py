"""Benchmark figures: map grids (one clip per model) and mean
deletion/insertion curves."""
import os
import os.path as osp
from typing import Dict, List

from .settings import BASELINES, model_title


def _save_small_png(fig, path: str, dpi: int) -> None:
    """Save ``fig`` as a 256-colour palette PNG (a few times smaller)."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=dpi)
    buf.seek(0)
    img = Image.open(buf).convert('RGB')
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(
        path, optimize=True)


def save_figures(results: Dict[str, dict], fig_dir: str,
                 prefix: str = 'benchmark') -> List[str]:
    """Map grids (one clip per model) and mean deletion/insertion curves,
    ``<fig_dir>/<prefix>_maps_<model>.png`` and
    ``<prefix>_deletion_insertion.png``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    os.makedirs(fig_dir, exist_ok=True)
    paths = []
    for name, res in results.items():
        ex = res.get('example')
        if not ex:
            continue
        frames = np.asarray(ex['frames'], np.uint8)
        mask = np.asarray(ex['mask'], bool)
        maps = {k: np.asarray(v, np.float32) for k, v in ex['maps'].items()}
        t = frames.shape[0]
        cols = sorted({int(round(x)) for x in
                       [i * (t - 1) / 5 for i in range(6)]})
        fig, axes = plt.subplots(len(maps) + 1, len(cols),
                                 figsize=(1.1 * len(cols),
                                          1.15 * (len(maps) + 1)))
        for j, f in enumerate(cols):
            ax = axes[0, j]
            ax.imshow(frames[f])
            if mask[f].any():
                ax.contour(mask[f], levels=[0.5], colors='lime',
                           linewidths=0.8)
            ax.set_title(f'frame {f}', fontsize=6)
        for i, (m, mp) in enumerate(maps.items(), start=1):
            lo, hi = float(mp.min()), float(mp.max())
            norm = (mp - lo) / (hi - lo) if hi > lo else np.zeros_like(mp)
            for j, f in enumerate(cols):
                ax = axes[i, j]
                ax.imshow(frames[f])
                ax.imshow(norm[f], cmap='jet', alpha=0.5, vmin=0, vmax=1)
                if mask[f].any():
                    ax.contour(mask[f], levels=[0.5], colors='white',
                               linewidths=0.6)
            axes[i, 0].set_ylabel(m, fontsize=6, rotation=0, ha='right',
                                  va='center')
        axes[0, 0].set_ylabel('clip', fontsize=6, rotation=0, ha='right',
                              va='center')
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f'{model_title(name)}: held-out clip {ex["clip"]} '
                     '(green/white: evidence mask); maps normalised per clip',
                     fontsize=7)
        fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.97))
        path = osp.join(fig_dir, f'{prefix}_maps_{name}.png')
        _save_small_png(fig, path, dpi=60)
        plt.close(fig)
        paths.append(path)
    fig, axes = plt.subplots(2, len(results),
                             figsize=(3.2 * len(results), 5.2),
                             squeeze=False)
    for j, (name, res) in enumerate(results.items()):
        for i, mode in enumerate(('deletion', 'insertion')):
            ax = axes[i, j]
            ax.set_prop_cycle(color=plt.cm.tab20.colors)
            for m, c in res['curves'].items():
                mean = np.mean(np.asarray(c[mode]), 0)
                x = np.linspace(0, 1, len(mean))
                style = ':' if m in BASELINES else '-'
                ax.plot(x, mean, style, lw=1, label=m)
            ax.set_title(f'{name}: {mode}', fontsize=8)
            ax.set_xlabel('fraction of cells ' + (
                'deleted' if mode == 'deletion' else 'inserted'), fontsize=7)
            ax.set_ylabel('p(target)', fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0, -1].legend(fontsize=5, loc='upper right')
    fig.tight_layout()
    path = osp.join(fig_dir, f'{prefix}_deletion_insertion.png')
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)
    return paths
