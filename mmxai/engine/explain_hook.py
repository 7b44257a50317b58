"""``ExplainHook``: explanations of the test set from the toolbox's own
``tools/test.py``, with one config line.

.. code-block:: python

    custom_imports = dict(imports=['mmxai'], allow_failed_imports=False)
    custom_hooks = [dict(type='mmxai.ExplainHook', explainer=dict(type='GradCAM'))]

For every selected test sample the hook computes an explanation just before
the test step (gradients re-enabled inside ``TestLoop``'s ``no_grad``; the
model is left exactly as found, so the test metrics do not change), hands
the maps to mmxai's metrics in ``test_evaluator``, and after the step writes
``<work_dir>/explanations/<index>/`` with ``explanation.json``, ``maps.npz``
and per view an overlay video (labels drawn), a montage, a plot.
"""
import copy
import glob
import os.path as osp
from typing import Any, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dist import barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from ..adapters import inputs_to_frames, unwrap_model
from ..utils.pipeline import loader_pipeline
from ..errors import ConfigError
from ..evaluation.base import ExplainedBatch, ExplanationMetric
from ..explainers import build_explainer
from ..outputs import (HOOK_DEFAULT, HOOK_LAYOUT, OutputWriter, RankOutputs,
                       display_maps, resolve_outputs, view_tracks)
from ..registry import HOOKS, METRICS, VISUALIZERS
from ..visualization.visualizer import ExplanationVisualizer, label_lines


@HOOKS.register_module()
class ExplainHook(Hook):
    """Explain test samples during ``runner.test()``.

    Args:
        explainer: method config (``dict(type='GradCAM', ...)``) or name.
        target: ``'pred'``, ``'gt'`` or a class index (with ``topk=1``).
        topk: explain the k most probable classes of each sample (files of
            ranks > 1 get a ``_top<r>`` suffix; metrics use rank 1).
        interval: explain dataset indices ``i`` with ``i % interval == 0``.
        max_samples: at most this many (the first ones by index).
        indices: explain exactly these dataset indices (overrides both).
        views: ``'all'`` or view indices whose outputs are written.
        outputs: names of :mod:`mmxai.outputs`: ``'json'`` (record),
            ``'npz'`` (``maps.npz``: maps, raw_maps, targets, scores),
            ``'video'`` (MP4 per view, labels drawn), ``'gif'``,
            ``'montage'`` (PNG key frames), ``'plot'`` (PNG of per-frame
            importance); the old ``'maps'``, ``'overlay'``, ``'temporal'``
            still work (deprecated). ``()`` writes nothing (metrics only).
        out_dir: folder; relative paths are under ``runner.work_dir``.
        alpha, cmap: overlay blending and colour map.
        fps: frame rate of overlay videos and GIFs.
        visualizer: also send overlays to vis backends: ``'runner'`` (the
            runner's visualizer's backends, e.g. Tensorboard/W&B) or a
            visualizer config (``dict(type='mmxai.ExplanationVisualizer',
            vis_backends=[...])``, ``save_dir`` defaults to ``out_dir``).
        out_type: what backends receive: ``'img'``, ``'gif'`` or ``'video'``.
        metrics: explanation metric configs (``dict(type='mmxai.
            DeletionInsertionAUC', ...)``) added to the test evaluator for
            the run and removed afterwards, so a config that inherits the
            hook does not have to restate (and cannot clash on)
            ``test_evaluator``. Metrics already listed in ``test_evaluator``
            are used as well.
    """
    priority = 'NORMAL'

    def __init__(self,
                 explainer: Union[str, dict] = dict(type='GradCAM'),
                 target: Union[str, int] = 'pred',
                 topk: int = 1,
                 interval: int = 1,
                 max_samples: Optional[int] = None,
                 indices: Optional[Sequence[int]] = None,
                 views: Union[str, int, Sequence[int]] = 'all',
                 outputs: Sequence[str] = HOOK_DEFAULT,
                 out_dir: str = 'explanations',
                 alpha: float = 0.5,
                 cmap: str = 'jet',
                 fps: int = 4,
                 visualizer: Union[None, str, dict] = None,
                 out_type: str = 'video',
                 metrics: Optional[Sequence[dict]] = None) -> None:
        outputs = resolve_outputs(outputs, 'ExplainHook', ConfigError)
        if int(interval) < 1 or int(topk) < 1:
            raise ConfigError('ExplainHook: interval and topk must be >= 1')
        if views != 'all' and not isinstance(views, (int, list, tuple)):
            raise ConfigError("ExplainHook: views must be 'all', an index "
                              'or a list of indices')
        if out_type not in ('img', 'gif', 'video'):
            raise ConfigError("ExplainHook: out_type must be 'img', 'gif' "
                              "or 'video'")
        self.explainer_cfg = copy.deepcopy(explainer)
        self.target = target
        self.topk = int(topk)
        self.interval = int(interval)
        self.max_samples = max_samples
        self.indices = None if indices is None else {int(i) for i in indices}
        self.views = views
        self.outputs = outputs
        self.out_dir = out_dir
        self.fps = fps
        self.alpha = alpha
        self.cmap = cmap
        self.visualizer_cfg = visualizer
        self.out_type = out_type
        metrics = [] if metrics is None else (
            [metrics] if isinstance(metrics, dict) else list(metrics))
        if not all(isinstance(m, dict) and 'type' in m for m in metrics):
            raise ConfigError('ExplainHook: metrics must be metric configs, '
                              "e.g. [dict(type='mmxai.DeletionInsertionAUC')]")
        self.metrics_cfg = copy.deepcopy(metrics)
        self._added_metrics: List[Any] = []
        self.current: Optional[ExplainedBatch] = None
        self.explained: List[int] = []
        self._bound: List[ExplanationMetric] = []

    # ------------------------------------------------------------ helpers
    def selected(self, index: int) -> bool:
        """Whether dataset sample ``index`` is explained."""
        if self.indices is not None:
            return index in self.indices
        if index % self.interval:
            return False
        return self.max_samples is None or \
            index // self.interval < int(self.max_samples)

    def rank(self, index: int) -> int:
        """Position of explained sample ``index`` among all the samples
        the hook explains, in dataset-index order."""
        if self.indices is not None:
            return sum(i < index for i in self.indices)
        return index // self.interval

    def _sample_index(self, data_sample, pos: int) -> int:
        idx = data_sample.metainfo.get('sample_idx') \
            if hasattr(data_sample, 'metainfo') else None
        if idx is not None:
            return int(idx)
        if self._order is not None and pos < len(self._order):
            return int(self._order[pos])
        return pos

    def _view_ids(self, num_views: int) -> List[int]:
        if self.views == 'all':
            return list(range(num_views))
        ids = [self.views] if isinstance(self.views, int) else self.views
        return [int(v) for v in ids if -num_views <= int(v) < num_views]

    # -------------------------------------------------------------- hooks
    def before_test(self, runner) -> None:
        model = unwrap_model(runner.model)
        self._model = model
        self._explainer = build_explainer(self.explainer_cfg, model)
        self._explainer.adapter.pipeline_config = loader_pipeline(
            runner.cfg.get('test_dataloader'))
        self._out = self.out_dir if osp.isabs(self.out_dir) else osp.join(
            runner.work_dir, self.out_dir)
        loader = runner.test_dataloader
        try:
            self._order = list(iter(loader.sampler))
        except TypeError:
            self._order = None
        meta = getattr(loader.dataset, 'metainfo', None) or {}
        self._classes = meta.get('classes')
        self._dataset = loader.dataset
        self._pos = 0
        self.explained = []
        self._writer = OutputWriter(self.outputs, HOOK_LAYOUT,
                                    alpha=self.alpha, cmap=self.cmap)
        self._backend_vis = self._build_backend_visualizer(runner)
        evaluator = runner.test_loop.evaluator
        self._remove_added_metrics(evaluator)  # a failed run's, if any
        self._added_metrics = [self._build_metric(c, evaluator)
                               for c in self.metrics_cfg]
        evaluator.metrics.extend(self._added_metrics)
        self._bound = [m for m in evaluator.metrics
                       if isinstance(m, ExplanationMetric)]
        self._feed_metrics(None)

    def _feed_metrics(self, batch: Optional[ExplainedBatch]) -> None:
        """Hand the current batch's explanations to the bound metrics."""
        for metric in getattr(self, '_bound', []):
            metric.feed(batch)

    def _remove_added_metrics(self, evaluator) -> None:
        """Leave the evaluator as configured."""
        if self._added_metrics:
            evaluator.metrics[:] = [
                m for m in evaluator.metrics
                if all(m is not a for a in self._added_metrics)]
            self._added_metrics = []

    @staticmethod
    def _build_metric(cfg: dict, evaluator) -> ExplanationMetric:
        cfg = dict(cfg)
        kind = cfg.get('type')
        if isinstance(kind, str) and '.' not in kind:
            cfg['type'] = f'mmxai.{kind}'  # whatever the default scope is
        metric = METRICS.build(cfg)
        if not isinstance(metric, ExplanationMetric):
            raise ConfigError(
                f"ExplainHook: metrics takes explanation metrics; '{kind}' "
                'is not one (list it in test_evaluator instead)')
        metric.dataset_meta = getattr(evaluator, 'dataset_meta', None)
        return metric

    def _build_backend_visualizer(self, runner):
        cfg = self.visualizer_cfg
        if cfg is None:
            return None
        name = f'mmxai_explain_backends_{id(self)}'
        if cfg == 'runner':
            vis = ExplanationVisualizer(name=name, alpha=self.alpha,
                                        cmap=self.cmap)
            vis._vis_backends = runner.visualizer._vis_backends
        elif isinstance(cfg, dict):
            cfg = dict(cfg)
            kind = cfg.pop('type', 'ExplanationVisualizer')
            cls = VISUALIZERS.get(kind) if isinstance(kind, str) else kind
            if cls is None:
                raise ConfigError(f"ExplainHook: unknown visualizer '{kind}'")
            cfg.setdefault('save_dir', self._out)
            cfg.setdefault('alpha', self.alpha)
            cfg.setdefault('cmap', self.cmap)
            cfg['name'] = name
            # direct construction: the runner's current visualizer stays
            vis = cls(**cfg)
        else:
            raise ConfigError("ExplainHook: visualizer must be None, "
                              "'runner' or a visualizer config")
        vis.dataset_meta = dict(classes=self._classes)
        return vis

    def before_test_iter(self, runner, batch_idx: int,
                         data_batch: Any = None) -> None:
        self.current = None
        self._feed_metrics(None)
        if not isinstance(data_batch, dict) or 'inputs' not in data_batch:
            return
        raw_samples = data_batch.get('data_samples') or []
        n = len(data_batch['inputs'])
        indices = [self._sample_index(
            raw_samples[p] if p < len(raw_samples) else None, self._pos + p)
            for p in range(n)]
        self._pos += n
        positions = [p for p in range(n) if self.selected(indices[p])]
        if not positions:
            return
        model = self._model
        with torch.no_grad():
            data = model.data_preprocessor(dict(data_batch), False)
        inputs = data['inputs'][positions]
        samples = [data['data_samples'][p] for p in positions]
        explainer = self._explainer
        with torch.enable_grad():
            if self.topk > 1:
                with torch.no_grad():
                    top = explainer.adapter.scores(inputs).topk(
                        min(self.topk, explainer.adapter.num_classes),
                        dim=-1).indices
                exps = [explainer.attribute(inputs, top[:, r], samples)
                        for r in range(top.shape[1])]
            else:
                exps = [explainer.attribute(inputs, self.target, samples)]
        self.current = ExplainedBatch(
            positions=positions, indices=[indices[p] for p in positions],
            inputs=inputs, data_samples=samples, explanation=exps[0],
            adapter=explainer.adapter, extra=exps[1:],
            explainer_cfg=self.explainer_cfg,
            ranks=[self.rank(indices[p]) for p in positions])
        self._feed_metrics(self.current)

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        batch, self.current = self.current, None
        self._feed_metrics(None)
        if batch is None:
            return
        exps = [batch.explanation] + list(batch.extra)
        frames = None
        if self._writer.needs_frames or self._backend_vis is not None:
            frames = inputs_to_frames(self._model, batch.inputs)
        for j, (pos, idx) in enumerate(zip(batch.positions, batch.indices)):
            out = outputs[pos] if outputs is not None and \
                pos < len(outputs) else batch.data_samples[j]
            sample_frames = None if frames is None else frames[j]
            self._write_sample(runner, idx, [e[j] for e in exps], out,
                               sample_frames)
            self.explained.append(idx)

    def _write_sample(self, runner, idx: int, exps: List, data_sample,
                      frames: Optional[np.ndarray]) -> None:
        """One sample's files through the one writer (``HOOK_LAYOUT``)."""
        views = self._view_ids(exps[0].maps.shape[1])
        ranks = []
        for rank, exp in enumerate(exps):
            suffix = '' if rank == 0 else f'_top{rank + 1}'
            arrays = exp.to_numpy() if self._writer.wants('npz') else {}
            for key in ('maps', 'raw_maps'):
                if key in arrays:
                    arrays[key] = arrays[key][:, views]
            target = int(exp.targets[0])
            tracks = []
            if self._writer.wants('video', 'gif', 'montage', 'plot'):
                tracks = view_tracks(
                    exp, frames, views, suffix,
                    label_lines(data_sample, self._classes, target),
                    plot_title=f'sample {idx} view {{v}}', fps=self.fps)
            if self._backend_vis is not None and frames is not None:
                maps, signed = display_maps(exp)  # signed: [-1, 1]
                for v in views:
                    self._backend_vis.add_datasample(
                        f'{idx:06d}_view{v}{suffix}', frames[v], data_sample,
                        maps=maps[v], target=target, out_type=self.out_type,
                        step=runner.iter, fps=self.fps, signed=signed)
            ranks.append(RankOutputs(arrays, tracks, suffix))
        info = self._data_info(idx)
        labels = label_lines(data_sample, self._classes)

        def record(files):
            rec = dict(index=idx, views=views, ranks=[])
            if info:
                rec['filename'] = info.get('filename')
            rec['labels'] = labels
            for r, exp in enumerate(exps):
                entry = exp.summary(self._classes)
                entry['files'] = files.rank_files(r)
                rec['ranks'].append(entry)
            if files.extras:
                rec['extras'] = list(files.extras)
            return rec

        self._writer.write_sample(self._out, idx, ranks, record=record,
                                  explanation=exps[0],
                                  extras_frames=None if frames is None
                                  else frames[views[0] if views else 0],
                                  class_names=self._classes)

    def _data_info(self, idx: int) -> Optional[dict]:
        try:
            return self._dataset.get_data_info(idx)
        except Exception:  # noqa: BLE001 - informative only
            return None

    def after_test(self, runner) -> None:
        self.current = None
        self._feed_metrics(None)
        for metric in self._bound:
            metric.unbind()
        self._bound = []
        self._remove_added_metrics(runner.test_loop.evaluator)
        logger = MMLogger.get_current_instance()
        logger.info(f'ExplainHook: explained {len(self.explained)} samples '
                    f'on this process -> {self._out}')
        if not self.outputs:
            return
        barrier()
        if is_main_process() and osp.isdir(self._out):
            done = sorted(int(osp.basename(osp.dirname(p))) for p in
                          glob.glob(osp.join(self._out, '*',
                                             'explanation.json')))
            self._writer.write_index(self._out, 'index.json', dict(
                method=self._explainer.name,
                settings=self._explainer.settings(), samples=done))
