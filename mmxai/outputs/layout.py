"""Where each output of a sample goes: one :class:`Layout` per mode.

Paths are format strings of ``key`` (the sample's dataset index), ``stem``
(a frame track's name, e.g. ``view0``) and ``suffix`` (``''`` for the
primary target, ``_top2`` ... for further top-k ranks), relative to the
output root. Record file lists are relative to the sample's ``folder``.
"""
import os.path as osp
from dataclasses import dataclass, replace

__all__ = ['Layout', 'VIDEO_LAYOUT', 'HOOK_LAYOUT', 'DATASET_LAYOUT',
           'LONG_VIDEO_LAYOUT', 'COMPARE_LAYOUT', 'HOOK_COMPARE_LAYOUT',
           'method_layout']


@dataclass(frozen=True)
class Layout:
    """File names of one sample's outputs (see the module docstring)."""
    folder: str = ''
    json: str = 'explanation.json'
    npz: str = 'maps{suffix}.npz'
    video: str = '{stem}.mp4'
    gif: str = '{stem}.gif'
    montage: str = '{stem}_montage.png'
    plot: str = '{stem}_temporal.png'
    extras: str = ''  # folder of method-specific extras (CFP's figure)

    def sample_folder(self, key: int) -> str:
        """The folder of sample ``key``, relative to the root."""
        return self.folder.format(key=key)

    def path(self, kind: str, key: int, stem: str = '',
             suffix: str = '') -> str:
        """Path of output ``kind`` of sample ``key``, relative to the root."""
        name = getattr(self, kind).format(key=key, stem=stem, suffix=suffix)
        return osp.normpath(osp.join(self.sample_folder(key), name))

    def extras_folder(self, key: int) -> str:
        return osp.normpath(osp.join(self.sample_folder(key),
                                     self.extras.format(key=key)))


#: ``explain_video`` / the CLI on one video: ``out_dir/overlay.mp4`` ...
VIDEO_LAYOUT = Layout(video='overlay.mp4', gif='overlay.gif',
                      montage='montage.png', plot='temporal_importance.png')
#: ``ExplainHook``: ``explanations/<index>/view<v>[_top<r>].mp4`` ...
HOOK_LAYOUT = Layout(folder='{key:06d}')
#: Dataset runs: ``records/<index>.json``, ``maps/<index>.npz``, visual
#: outputs under ``views/<index>/``.
DATASET_LAYOUT = Layout(
    json='records/{key:06d}.json', npz='maps/{key:06d}{suffix}.npz',
    video='views/{key:06d}/{stem}.mp4', gif='views/{key:06d}/{stem}.gif',
    montage='views/{key:06d}/{stem}_montage.png',
    plot='views/{key:06d}/{stem}_temporal.png', extras='extras/{key:06d}')
#: Long videos (``explain_long_video``): one record and one maps chunk per
#: window, ``windows/<index>.json`` and ``maps/<index>.npz``; the run-level
#: files (``timeline.*``, ``overlay.mp4``, ``index.html``) at the root.
LONG_VIDEO_LAYOUT = Layout(
    json='windows/{key:06d}.json', npz='maps/{key:06d}.npz',
    video='overlay.mp4', gif='overlay.gif', montage='montage.png',
    plot='timeline.png')
#: Method comparisons (``compare_methods``): per clip ``clips/<index>/``
#: its record and one maps file per method (``maps_<method>.npz``, the
#: method as the suffix), the side-by-side ``overlay.mp4`` and
#: ``montage.png``, one tile video per method (``<method>.mp4``, the
#: viewer's); ``compare.json``, ``compare.md``, ``agreement.png`` and
#: ``index.html`` at the root.
COMPARE_LAYOUT = Layout(
    folder='clips/{key:02d}', json='record.json', npz='maps{suffix}.npz',
    video='{stem}.mp4', gif='{stem}.gif', montage='montage.png',
    plot='{stem}_temporal.png')
#: ``ExplainHook`` with several explainers: ``HOOK_LAYOUT`` under one folder
#: per method, ``explanations/<method>/<index>/view<v>[_top<r>].mp4`` ...;
#: ``<method>`` is filled by :func:`method_layout`. ``compare.json`` and
#: ``compare.md`` go to the work dir, ``index.json`` to the root.
HOOK_COMPARE_LAYOUT = Layout(folder='{method}/{key:06d}')


def method_layout(layout: Layout, method: str) -> Layout:
    """``layout`` with its ``{method}`` folder part set to ``method``."""
    safe = method.replace('{', '').replace('}', '').replace(osp.sep, '_')
    return replace(layout, folder=layout.folder.replace('{method}', safe))
