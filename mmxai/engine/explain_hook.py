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

With a list of explainers (``explainer=[dict(type='GradCAM'), 'saliency',
...]``) every selected sample is explained by every method: files go to
``explanations/<method>/<index>/`` (``HOOK_COMPARE_LAYOUT``), every
explanation metric reports ``mmxai/<method>/<key>`` and ``..._ci95``, and
``<work_dir>/compare.json`` / ``compare.md`` / ``agreement.png`` rank the
methods by each metric (:mod:`mmxai.outputs.hook_comparison`) beside a
seeded random map scored by the same metric instances, with each method's
time (and peak memory) per sample, the agreement between methods (mean
Spearman of their maps per sample) and a recommendation derived from these
numbers (:mod:`mmxai.evaluation.recommendation`, the rules of
``tools/compare.py``). A method that does not apply to the model is listed
with its reason and skipped; one that fails on a sample is recorded (index,
method, error) and the run goes on.
"""
import copy
import dataclasses
import glob
import math
import os.path as osp
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dist import all_gather_object, barrier, is_main_process
from mmengine.hooks import Hook
from mmengine.logging import MMLogger

from ..adapters import inputs_to_frames, unwrap_model
from ..utils.pipeline import loader_pipeline
from ..errors import ConfigError, UnsupportedModelError
from ..evaluation.agreement import agreement_matrix
from ..evaluation.base import ExplainedBatch, ExplanationMetric
from ..evaluation.cost import measure
from ..evaluation.localization import random_map
from ..evaluation.method_stats import method_metric_stats
from ..evaluation.model_randomization import ModelRandomization
from ..evaluation.sanity import default_cascade
from ..explainers import build_explainer
from ..explainers.builder import method_name
from ..outputs import (HOOK_DEFAULT, HOOK_LAYOUT, OutputWriter, RankOutputs,
                       display_maps, resolve_outputs, view_tracks)
from ..outputs.hook_comparison import hook_comparison, write_hook_comparison
from ..outputs.layout import HOOK_COMPARE_LAYOUT, method_layout
from ..registry import HOOKS, METRICS, VISUALIZERS
from ..visualization.visualizer import ExplanationVisualizer, label_lines


@HOOKS.register_module()
class ExplainHook(Hook):
    """Explain test samples during ``runner.test()``.

    Args:
        explainer: method config (``dict(type='GradCAM', ...)``) or name;
            or a list of them: every sample is explained by each (files
            under ``<out_dir>/<method>/<index>/``, metrics per method,
            ``compare.json`` / ``compare.md`` in the work dir).
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
        random_metrics: several explainers: class names of the metrics
            that also score a uniform random map per sample (the
            ``random`` baseline of ``compare.json``; ``()``: none).
        seed: seed of that map: sample ``i``'s map is
            ``torch.rand(shape, generator=torch.Generator().manual_seed(
            seed * 2**32 + i))`` (:func:`~mmxai.evaluation.random_map`),
            the same under any batch size or world size.
    """
    priority = 'NORMAL'
    #: the metrics that score the random map by default (the curves)
    RANDOM_METRICS = ('DeletionInsertionAUC', 'AverageDrop')

    def __init__(self,
                 explainer: Union[str, dict, Sequence[Union[str, dict]]]
                 = dict(type='GradCAM'),
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
                 metrics: Optional[Sequence[dict]] = None,
                 random_metrics: Sequence[str] = RANDOM_METRICS,
                 seed: int = 0) -> None:
        outputs = resolve_outputs(outputs, 'ExplainHook', ConfigError)
        if isinstance(random_metrics, str):
            random_metrics = (random_metrics, )
        if int(seed) < 0:
            raise ConfigError(f'ExplainHook: seed must be >= 0, got {seed}')
        if int(interval) < 1 or int(topk) < 1:
            raise ConfigError('ExplainHook: interval and topk must be >= 1')
        if views != 'all' and not isinstance(views, (int, list, tuple)):
            raise ConfigError("ExplainHook: views must be 'all', an index "
                              'or a list of indices')
        if out_type not in ('img', 'gif', 'video'):
            raise ConfigError("ExplainHook: out_type must be 'img', 'gif' "
                              "or 'video'")
        self.multi = isinstance(explainer, (list, tuple))
        if self.multi and not explainer:
            raise ConfigError('ExplainHook: explainer list is empty')
        self.explainer_cfg = copy.deepcopy(explainer)
        #: several explainers: {method: reason} of those that do not apply,
        #: [dict(index, method, error)] of failed explanations
        self.not_applicable: Dict[str, str] = {}
        self.failures: List[dict] = []
        self.random_metrics = tuple(str(m).rsplit('.', 1)[-1]
                                    for m in random_metrics)
        self.seed = int(seed)
        self._reset_comparison()
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
        pipeline = loader_pipeline(runner.cfg.get('test_dataloader'))
        self._out = self.out_dir if osp.isabs(self.out_dir) else osp.join(
            runner.work_dir, self.out_dir)
        if self.multi:
            self._build_explainers(model, pipeline)
        else:
            self._explainer = build_explainer(self.explainer_cfg, model)
            self._explainer.adapter.pipeline_config = pipeline
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

    def _build_explainers(self, model, pipeline) -> None:
        """Several explainers: build each; one that does not apply to the
        model is listed in ``not_applicable`` (logged once) and skipped."""
        logger = MMLogger.get_current_instance()
        self.not_applicable, self.failures = {}, []
        self._reset_comparison()
        self._explainers: Dict[str, Any] = {}
        self._method_cfgs: Dict[str, Any] = {}
        for cfg in self.explainer_cfg:
            kind = cfg if isinstance(cfg, str) else dict(cfg).get('type', '')
            try:
                explainer = build_explainer(copy.deepcopy(cfg), model)
                name = explainer.name
            except UnsupportedModelError as e:
                name = method_name(str(kind))
                self.not_applicable[name] = str(e)
                logger.warning(f'ExplainHook: {name}: n/a ({e})')
                continue
            base, k = name, 2
            while name in self._explainers or name in self.not_applicable:
                name, k = f'{base}_{k}', k + 1
            explainer.adapter.pipeline_config = pipeline
            self._explainers[name] = explainer
            self._method_cfgs[name] = copy.deepcopy(cfg)
        self._writers = {
            name: OutputWriter(self.outputs,
                               method_layout(HOOK_COMPARE_LAYOUT, name),
                               alpha=self.alpha, cmap=self.cmap)
            for name in self._explainers}

    def _reset_comparison(self) -> None:
        """Per-sample values of this process (several explainers):
        ``{method: {index: seconds}}``, ``{method: {index: peak MiB}}``,
        ``{index: dict(methods, matrix)}``, ``{metric position: {index:
        [rows]}}`` of the random map."""
        self._seconds: Dict[str, Dict[int, float]] = {}
        self._peaks: Dict[str, Dict[int, Optional[float]]] = {}
        self._agreement: Dict[int, dict] = {}
        self._random_rows: Dict[int, Dict[int, List[dict]]] = {}

    def _feed_metrics(self, batch: Any) -> None:
        """Hand the current batch's explanations to the bound metrics
        (several explainers: ``{method: batch}``, ``{}`` for none)."""
        if batch is None and self.multi:
            batch = {}
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
        if self.multi:
            self._explain_methods(positions, [indices[p] for p in positions],
                                  inputs, samples)
            return
        explainer = self._explainer
        exps = self._explain(explainer, inputs, samples)
        self.current = ExplainedBatch(
            positions=positions, indices=[indices[p] for p in positions],
            inputs=inputs, data_samples=samples, explanation=exps[0],
            adapter=explainer.adapter, extra=exps[1:],
            explainer_cfg=self.explainer_cfg,
            ranks=[self.rank(indices[p]) for p in positions])
        self._feed_metrics(self.current)

    def _explain(self, explainer, inputs, samples) -> List[Any]:
        """Explanations of ``inputs``: the target, or the top-k ranks."""
        with torch.enable_grad():
            if self.topk > 1:
                with torch.no_grad():
                    top = explainer.adapter.scores(inputs).topk(
                        min(self.topk, explainer.adapter.num_classes),
                        dim=-1).indices
                return [explainer.attribute(inputs, top[:, r], samples)
                        for r in range(top.shape[1])]
            return [explainer.attribute(inputs, self.target, samples)]

    def _explain_methods(self, positions: List[int], indices: List[int],
                         inputs, samples) -> None:
        """Every method on the batch; ``self.current``: ``{method:
        ExplainedBatch}`` of the samples each explained. A failed batch is
        retried sample by sample, so one bad sample costs only itself. Each
        method's wall time on the batch (retries included; peak memory
        where measurable, :func:`~mmxai.evaluation.cost.measure`) is shared
        equally among the samples it explained."""
        batches: Dict[str, ExplainedBatch] = {}
        for name, explainer in list(self._explainers.items()):
            done, sec, mib = measure(
                lambda: self._explain_method(name, explainer, indices,
                                             inputs, samples), inputs.device)
            if done is None:
                continue
            exps, ok = done
            for j in ok:
                self._seconds.setdefault(name, {})[int(indices[j])] = \
                    sec / len(ok)
                self._peaks.setdefault(name, {})[int(indices[j])] = \
                    None if not math.isfinite(mib) else float(mib)
            batches[name] = ExplainedBatch(
                positions=[positions[j] for j in ok],
                indices=[indices[j] for j in ok],
                inputs=inputs[ok] if len(ok) < len(positions) else inputs,
                data_samples=[samples[j] for j in ok],
                explanation=exps[0], adapter=explainer.adapter,
                extra=exps[1:], explainer_cfg=self._method_cfgs[name],
                ranks=[self.rank(indices[j]) for j in ok])
        self._step = (positions, inputs)
        self.current = batches
        self._feed_metrics(batches)

    def _explain_method(self, name: str, explainer, indices: List[int],
                        inputs, samples):
        """``(explanations, positions explained)`` of one method on the
        batch, or None (not applicable, or failed on every sample)."""
        logger = MMLogger.get_current_instance()
        n = len(indices)
        try:
            return self._explain(explainer, inputs, samples), list(range(n))
        except UnsupportedModelError as e:
            self._drop(name, e)
            return None
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001 - retried per sample below
            pass
        ok, parts = [], []
        for j in range(n):
            try:
                parts.append(self._explain(explainer, inputs[j:j + 1],
                                           [samples[j]]))
                ok.append(j)
            except UnsupportedModelError as e:
                self._drop(name, e)
                return None
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded
                error = f'{type(e).__name__}: {e}'.splitlines()[0]
                self.failures.append(dict(
                    index=int(indices[j]), method=name, error=error))
                logger.warning(f'ExplainHook: {name} failed on '
                               f'sample {indices[j]}: {error}')
        if not ok:
            return None
        return [_cat([p[r] for p in parts]) for r in range(len(parts[0]))], ok

    def _drop(self, name: str, error: Exception) -> None:
        """Method ``name`` does not apply to the model: listed, skipped."""
        self._explainers.pop(name, None)
        self.not_applicable[name] = str(error)
        MMLogger.get_current_instance().warning(
            f'ExplainHook: {name}: n/a ({error})')

    def after_test_iter(self, runner, batch_idx: int, data_batch: Any = None,
                        outputs: Optional[Sequence] = None) -> None:
        batch, self.current = self.current, None
        self._feed_metrics(None)
        if batch is None:
            return
        if self.multi:
            self._agree_and_random(batch)
            self._write_methods(runner, batch, outputs)
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

    def _agree_and_random(self, batches: Dict[str, ExplainedBatch]) -> None:
        """Per explained sample: the agreement matrix of the methods that
        explained it (:func:`~mmxai.evaluation.agreement.agreement_matrix`
        of their ``maps`` ``[V, T, H, W]``; only the matrix is kept) and the
        rows of the random map (seeded per sample index, the shape and
        target of the first method's map) from each metric of
        ``random_metrics`` (its own ``evaluate_batch``)."""
        where: Dict[int, List[tuple]] = {}
        for name, b in batches.items():
            for j, idx in enumerate(b.indices):
                where.setdefault(int(idx), []).append((name, b, j))
        for idx, got in where.items():
            if len(got) > 1:
                mat = agreement_matrix({name: b.explanation.maps[j]
                                        for name, b, j in got})
                self._agreement[idx] = dict(
                    methods=[name for name, _, _ in got],
                    matrix=mat.tolist())
        chosen = [(k, m) for k, m in enumerate(self._bound)
                  if type(m).__name__ in self.random_metrics]
        if not chosen or not where:
            return
        refs = [got[0][1:] for got in where.values()]
        maps, targets = [], []
        for b, j in refs:
            shape = tuple(b.explanation.maps[j:j + 1].shape)
            gen = torch.Generator().manual_seed(
                self.seed * 2**32 + int(b.indices[j]))
            maps.append(random_map(shape, generator=gen).to(
                b.explanation.maps.device))
            targets.append(torch.as_tensor(b.explanation.targets)[j:j + 1])
        fake = SimpleNamespace(maps=torch.cat(maps), raw_maps=torch.cat(maps),
                               targets=torch.cat(targets))
        first = refs[0][0]
        rbatch = ExplainedBatch(
            positions=[b.positions[j] for b, j in refs],
            indices=[int(b.indices[j]) for b, j in refs],
            inputs=torch.cat([b.inputs[j:j + 1] for b, j in refs]),
            data_samples=[b.data_samples[j] for b, j in refs],
            explanation=fake, adapter=first.adapter, explainer_cfg=None,
            ranks=[b.ranks[j] if b.ranks else None for b, j in refs])
        for k, metric in chosen:
            rows = metric.evaluate_batch(rbatch)
            store = self._random_rows.setdefault(k, {})
            for r, row in enumerate(rows):
                idx = int(row.get('index', rbatch.indices[
                    min(r, len(rbatch.indices) - 1)]))
                store.setdefault(idx, []).append(row)

    def _write_methods(self, runner, batches: Dict[str, ExplainedBatch],
                       outputs: Optional[Sequence]) -> None:
        """Each method's files, ``HOOK_COMPARE_LAYOUT``."""
        positions, inputs = self._step
        frames = None
        if batches and (self._writer.needs_frames or
                        self._backend_vis is not None):
            frames = inputs_to_frames(self._model, inputs)
        for name, batch in batches.items():
            exps = [batch.explanation] + list(batch.extra)
            for j, (pos, idx) in enumerate(zip(batch.positions,
                                               batch.indices)):
                out = outputs[pos] if outputs is not None and \
                    pos < len(outputs) else batch.data_samples[j]
                sample_frames = None if frames is None else \
                    frames[positions.index(pos)]
                self._write_sample(runner, idx, [e[j] for e in exps], out,
                                   sample_frames, self._writers[name],
                                   f'{name}/')
                if idx not in self.explained:
                    self.explained.append(idx)

    def _write_sample(self, runner, idx: int, exps: List, data_sample,
                      frames: Optional[np.ndarray],
                      writer: Optional[OutputWriter] = None,
                      tag: str = '') -> None:
        """One sample's files through the one writer (``HOOK_LAYOUT``;
        several explainers: ``writer`` of the method's layout)."""
        writer = self._writer if writer is None else writer
        views = self._view_ids(exps[0].maps.shape[1])
        ranks = []
        for rank, exp in enumerate(exps):
            suffix = '' if rank == 0 else f'_top{rank + 1}'
            arrays = exp.to_numpy() if writer.wants('npz') else {}
            for key in ('maps', 'raw_maps'):
                if key in arrays:
                    arrays[key] = arrays[key][:, views]
            target = int(exp.targets[0])
            tracks = []
            if writer.wants('video', 'gif', 'montage', 'plot'):
                tracks = view_tracks(
                    exp, frames, views, suffix,
                    label_lines(data_sample, self._classes, target),
                    plot_title=f'sample {idx} view {{v}}', fps=self.fps)
            if self._backend_vis is not None and frames is not None:
                maps, signed = display_maps(exp)  # signed: [-1, 1]
                for v in views:
                    self._backend_vis.add_datasample(
                        f'{tag}{idx:06d}_view{v}{suffix}', frames[v], data_sample,
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

        writer.write_sample(self._out, idx, ranks, record=record,
                                  explanation=exps[0],
                                  extras_frames=None if frames is None
                                  else frames[views[0] if views else 0],
                                  class_names=self._classes)

    def _data_info(self, idx: int) -> Optional[dict]:
        try:
            return self._dataset.get_data_info(idx)
        except Exception:  # noqa: BLE001 - informative only
            return None

    def after_test_epoch(self, runner, metrics: Optional[dict] = None
                         ) -> None:
        """Several explainers: ``compare.json`` / ``compare.md`` /
        ``agreement.png`` in the work dir from the metrics' per-method
        statistics and the hook's per-sample values (time, peak memory,
        agreement, random-map rows), gathered from every process (a sample
        seen twice, e.g. a distributed sampler's padding, counts once)."""
        if not self.multi:
            return
        failures = [f for part in all_gather_object(self.failures)
                    for f in part]
        n = len({i for part in all_gather_object(self.explained)
                 for i in part})
        seconds = _merge(all_gather_object(self._seconds), depth=2)
        peaks = _merge(all_gather_object(self._peaks), depth=2)
        agreement = _merge(all_gather_object(self._agreement), depth=1)
        random_rows = _merge(all_gather_object(self._random_rows), depth=2)
        self.failures = sorted(failures, key=lambda f: (f['index'],
                                                        f['method']))
        if not is_main_process():
            return
        stats: Dict[str, Dict[str, Any]] = {}
        random: Dict[str, Dict[str, Any]] = {}
        sanity = None
        for k, metric in enumerate(self._bound):
            prefix = f'{metric.prefix}/' if metric.prefix else ''
            for name, per in getattr(metric, 'method_stats', {}).items():
                for key, st in per.items():
                    stats.setdefault(prefix + key, {})[name] = st
            rows = [r for idx in sorted(random_rows.get(k, {}))
                    for r in random_rows[k][idx]]
            if rows:
                for key, st in method_metric_stats(
                        metric.compute_metrics, rows).items():
                    if 'mean' in st:  # scalars only
                        random.setdefault(prefix + key, st)
            if sanity is None and isinstance(metric, ModelRandomization):
                sanity = dict(cascade=list(metric.cascade or default_cascade(
                    self._model)), threshold=metric.threshold)
        names = list(self._explainers)
        summary = hook_comparison(
            names, stats, self.not_applicable, self.failures, n,
            settings={m: e.settings() for m, e in self._explainers.items()},
            random=random, seconds=seconds, peaks=peaks,
            agreement=[agreement[i] for i in sorted(agreement)],
            random_baseline=dict(
                seed=self.seed, metrics=list(self.random_metrics),
                map='uniform [0, 1) per pixel, the shape and target of the '
                "sample's first map: torch.rand(shape, generator=torch."
                'Generator().manual_seed(seed * 2**32 + index))'),
            sanity=sanity)
        paths = write_hook_comparison(runner.work_dir, summary)
        logger = MMLogger.get_current_instance()
        logger.info(f"ExplainHook: compared {len(names)} methods on {n} "
                    f"samples -> {paths['md']}")
        for line in summary['recommendation']:
            logger.info(f'ExplainHook: {line}')

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
        if self.multi:
            if is_main_process() and osp.isdir(self._out):
                self._writer.write_index(self._out, 'index.json', dict(
                    methods={name: dict(
                        method=e.name, settings=e.settings(),
                        samples=_done(osp.join(self._out, name)))
                        for name, e in self._explainers.items()},
                    not_applicable=self.not_applicable,
                    failures=self.failures))
            return
        if is_main_process() and osp.isdir(self._out):
            done = sorted(int(osp.basename(osp.dirname(p))) for p in
                          glob.glob(osp.join(self._out, '*',
                                             'explanation.json')))
            self._writer.write_index(self._out, 'index.json', dict(
                method=self._explainer.name,
                settings=self._explainer.settings(), samples=done))


def _merge(parts: Sequence[dict], depth: int) -> dict:
    """Dicts of every process as one; at ``depth`` 2 ``{key: {index: v}}``
    merged per key. The first process's value of an index wins."""
    out: dict = {}
    for part in parts:
        for key, value in part.items():
            if depth == 1:
                out.setdefault(key, value)
            else:
                inner = out.setdefault(key, {})
                for idx, v in value.items():
                    inner.setdefault(idx, v)
    return out


def _done(folder: str) -> List[int]:
    """Sample indices with a record under ``folder``."""
    return sorted(int(osp.basename(osp.dirname(p))) for p in
                  glob.glob(osp.join(folder, '*', 'explanation.json')))


def _cat(exps: Sequence[Any]) -> Any:
    """Explanations of single samples as one batch (same method)."""
    first = exps[0]
    if len(exps) == 1:
        return first

    def cat(values):
        return torch.cat(values) if all(
            isinstance(v, torch.Tensor) for v in values) else values[0]
    return dataclasses.replace(
        first, maps=cat([e.maps for e in exps]),
        raw_maps=cat([e.raw_maps for e in exps]),
        targets=cat([e.targets for e in exps]),
        scores=cat([e.scores for e in exps]),
        layer_maps={k: cat([e.layer_maps[k] for e in exps])
                    for k in first.layer_maps
                    if all(k in e.layer_maps for e in exps)},
        mean_probs=None if first.mean_probs is None
        else cat([e.mean_probs for e in exps]))
