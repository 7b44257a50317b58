"""``compare_methods``: which explanation to trust for *this* model, by
evidence on the user's own clips.

Every chosen method explains the same clips (the same target class: the
model's prediction on each clip, or a given class) and is scored with the
registered metrics themselves (one implementation: ``DeletionInsertionAUC``,
``AverageDrop``, ``ModelRandomization`` fed an ``ExplainedBatch``):

* deletion / insertion AUC (lower / higher is better) and average drop;
* the randomisation sanity check, cheap form: the head, then the last
  backbone stage re-initialised (two steps of Adebayo et al.'s cascade); a
  method passes when the rank correlation after both is below the metric's
  threshold (0.5);
* time and peak memory of the explanation (CPU: the rise of the resident
  set's peak over the resident size before; CUDA: of the allocator's peak);
* agreement between methods: Spearman rank correlation of their maps.

A random map is scored the same way, so "beats random" is measured, not
assumed. The recommendation is derived from these numbers
(:func:`recommend`, :mod:`mmxai.evaluation.recommendation`: the same rules
as the dataset-scale comparison of ``ExplainHook``; time and memory:
:func:`mmxai.evaluation.cost.measure`; agreement:
:mod:`mmxai.evaluation.agreement`). Files:
:func:`mmxai.outputs.write_comparison`.

Budgets (:data:`BUDGETS`): ``fast`` (small perturbation budgets, 10-step
curves; about a minute for one clip of the bundled model on 2 CPU cores)
and ``full`` (each method's own defaults, the authors' settings; 128-step
curves).
"""
import math
import os.path as osp
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..adapters import unwrap_model
from ..errors import (ConfigError, InputError, MMXAIError,
                      UnsupportedModelError)
from ..evaluation import (AverageDrop, DeletionInsertionAUC, ExplainedBatch,
                          ModelRandomization, default_cascade, random_map)
from ..evaluation.agreement import agreement_matrix, mean_agreement
from ..evaluation.cost import measure
from ..evaluation.recommendation import recommend
from ..evaluation.sanity import is_norm
from ..explainers import build_explainer, method_names
from ..explainers.builder import method_options
from ..fileio import check_writable
from ..preflight import check_video_file
from ..registry import EXPLAINERS
from ..utils.layers import get_layer
from .class_names import class_names_of, given_class_names
from .outputs import video_track
from .video_input import load_video_sample

__all__ = ['BUDGETS', 'DEFAULT_METHODS', 'Comparison', 'compare_methods',
           'recommend', 'budget_settings', 'resolve_methods']

#: Methods compared when none are named (``--all``: every registered one).
DEFAULT_METHODS = ('gradcam', 'gradcam++', 'saliency_tubes', 'saliency',
                   'integrated_gradients', 'smoothgrad', 'occlusion', 'rise',
                   'lime', 'attention_rollout')

#: Per budget: method settings (``occlusion``'s window is a fraction of the
#: input: ``occlusion_fraction`` of T, H, W) and the metrics' settings.
BUDGETS: Dict[str, Dict[str, Any]] = {
    'fast': dict(
        methods={
            'integrated_gradients': dict(n_steps=8),
            'smoothgrad': dict(n_samples=4),
            'rise': dict(num_masks=32, cells=(4, 4, 4)),
            'lime': dict(num_samples=32, n_segments=24),
            'kernel_shap': dict(num_samples=32, n_segments=24),
            'step': dict(areas=(0.05, ), max_iter=4, core_start=2),
            'cfp': dict(depth=2),
        },
        occlusion_fraction=0.25,
        deletion=dict(steps=10, cell_size=(1, 8, 8), baseline='fade',
                      batch_size=11),
        description='small perturbation budgets (RISE 32 masks, LIME/SHAP '
        '32 samples on 24 supervoxels, occlusion 4x4x4 windows, IG 8 steps, '
        'SmoothGrad 4 samples, STEP 4 iterations), 10-step deletion/'
        'insertion curves over 1x8x8 cells'),
    'full': dict(
        methods={},
        occlusion_fraction=None,
        deletion=dict(steps=128, cell_size=(1, 8, 8), baseline='fade'),
        description="each method's own defaults (the authors' budgets), "
        '128-step deletion/insertion curves over 1x8x8 cells'),
}


def resolve_methods(methods: Union[None, str, Sequence[str]] = None,
                    all_methods: bool = False) -> List[str]:
    """Method names in order, duplicates dropped; ``None``: the defaults
    that are registered; ``all_methods``: every registered method.

    Raises:
        ConfigError: an unknown name (the valid ones listed).
    """
    names = method_names()
    canonical = [n for n, reg in names.items()
                 if EXPLAINERS.module_dict[reg].name == n]
    if all_methods:
        return canonical
    if methods is None:
        return [m for m in DEFAULT_METHODS if m in names]
    items = [methods] if isinstance(methods, str) else list(methods)
    out = []
    for m in items:
        for part in str(m).split(','):
            part = part.strip().lower()
            if not part:
                continue
            if part not in names:
                raise ConfigError(f"unknown method '{part}'; available: "
                                  f"{', '.join(sorted(canonical))}")
            name = EXPLAINERS.module_dict[names[part]].name
            if name not in out:
                out.append(name)
    if not out:
        raise ConfigError('no method named; give --methods NAME ... or --all')
    return out


def budget_settings(budget: str, method: str, input_shape: Sequence[int]
                    ) -> dict:
    """The settings of ``method`` under ``budget`` for inputs of canonical
    shape ``[B, V, C, T, H, W]`` (only the options the method accepts)."""
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget '{budget}': "
                          f"{', '.join(BUDGETS)}")
    b = BUDGETS[budget]
    settings = dict(b['methods'].get(method, {}))
    frac = b.get('occlusion_fraction')
    if method == 'occlusion' and frac:
        t, h, w = (int(s) for s in input_shape[-3:])
        win = tuple(max(1, math.ceil(s * frac)) for s in (t, h, w))
        settings.update(window=win, stride=win)
    cls = EXPLAINERS.module_dict[method_names()[method]]
    known = method_options(cls)
    if known is not None:
        settings = {k: v for k, v in settings.items() if k in known}
    return settings


@dataclass
class Comparison:
    """What :func:`compare_methods` returns.

    Attributes:
        summary: the ``compare.json`` content (per-method means, per-clip
            values, agreement, not applicable, failures, recommendation).
        files: ``{name: path}`` of what was written.
        explanations: per clip, ``{method: Explanation}``.
    """
    summary: Dict[str, Any]
    files: Dict[str, str] = field(default_factory=dict)
    explanations: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def recommendation(self) -> List[str]:
        return self.summary['recommendation']


def sanity_cascade(model: nn.Module, inputs: Optional[torch.Tensor] = None
                   ) -> List[str]:
    """The cheap cascade: the head, then the last backbone stage that runs
    (the first backbone entry of :func:`~mmxai.evaluation.default_cascade`
    probed on ``inputs`` that is not a bare normalisation layer, e.g. not
    UniFormer's final ``norm``)."""
    full = default_cascade(model, inputs)
    head = full[:1]
    stage = [n for n in full if n.startswith('backbone.')
             and not is_norm(get_layer(model, n))][:1]
    return head + stage if stage else full[:2]


def _scores(metric, batch) -> dict:
    """One sample's results of a registered metric on ``batch``."""
    return metric.evaluate_batch(batch)[0]


def _finite(x) -> Optional[float]:
    return None if x is None or not np.isfinite(x) else float(x)


def compare_methods(model: Union[nn.Module, str], videos: Sequence[str],
                    methods: Union[None, str, Sequence[str]] = None,
                    all_methods: bool = False, budget: str = 'fast',
                    out_dir: Optional[str] = None,
                    target: Union[str, int] = 'pred',
                    class_names: Union[None, str, Sequence[str]] = None,
                    checkpoint: Optional[str] = None, device: str = 'cpu',
                    trust_checkpoint: bool = False,
                    cfg_options: Optional[dict] = None,
                    sanity: bool = True, seed: int = 0,
                    log: Optional[Callable[[str], None]] = None
                    ) -> Comparison:
    """Run ``methods`` on the same clips of ``model`` and compare them.

    Args:
        model: a recognizer from :func:`~mmxai.apis.init_recognizer`, or a
            config to build one with ``checkpoint`` / ``device``.
        videos: video files (one clip each, by the test pipeline).
        methods: names (default :data:`DEFAULT_METHODS`); ``all_methods``:
            every registered method.
        budget: ``'fast'`` or ``'full'`` (:data:`BUDGETS`).
        out_dir: where to write (nothing is written if None).
        target: ``'pred'`` (each clip's prediction) or a class index; every
            method explains the same class.
        sanity: run the cheap randomisation check.
        log: called with one line per method and clip (progress).
    Raises:
        InputError, ConfigError, OutputError: one-line, fixable problems
        (checked before the model is built).
    """
    if isinstance(videos, str):
        videos = [videos]
    if not videos:
        raise InputError('no video given')
    for v in videos:
        check_video_file(v)
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget '{budget}': {', '.join(BUDGETS)}")
    if not (target == 'pred' or isinstance(target, int)):
        raise ConfigError(f"target must be 'pred' or a class index, got "
                          f'{target!r}')
    names = resolve_methods(methods, all_methods)
    if out_dir is not None:
        check_writable(out_dir)
    labels = given_class_names(class_names)
    from .model import model_and_config
    model, cfg = model_and_config(
        model, checkpoint, device=device, trust_checkpoint=trust_checkpoint,
        cfg_options=cfg_options)
    labels = labels or class_names_of(model)
    log = log or (lambda s: None)
    b = BUDGETS[budget]
    del_metric = DeletionInsertionAUC(**b['deletion'])
    drop_metric = AverageDrop()
    rand_metric = None  # its cascade is probed on the first clip
    per_clip: List[Dict[str, Any]] = []
    not_applicable: Dict[str, str] = {}
    failures: List[Dict[str, Any]] = []
    all_exps: List[Dict[str, Any]] = []
    tracks: List[Dict[str, Any]] = []
    settings_used: Dict[str, dict] = {}
    gen = torch.Generator().manual_seed(seed)
    for ci, video in enumerate(videos):
        sample = load_video_sample(video, cfg)
        with torch.no_grad():
            data = model.data_preprocessor(sample.data, False)
        inputs, samples = data['inputs'], data.get('data_samples')
        if rand_metric is None:
            rand_metric = ModelRandomization(cascade=sanity_cascade(
                unwrap_model(model), inputs), max_samples=1, seed=seed)
        exps: Dict[str, Any] = {}
        rows: Dict[str, Dict[str, Any]] = {}
        adapter = None
        tgt = target
        for name in names:
            if name in not_applicable:
                continue
            try:
                explainer = build_explainer(name, model)
                adapter = explainer.adapter
                if tgt == 'pred':
                    with torch.no_grad():
                        tgt = int(adapter.scores(inputs).argmax(-1)[0])
                if not 0 <= int(tgt) < adapter.num_classes:
                    raise ConfigError(
                        f'target {tgt} is out of range: the model has '
                        f'{adapter.num_classes} classes')
                shape = adapter.to_video(inputs).shape
                settings = budget_settings(budget, name, shape)
                settings_used[name] = settings
                if settings:
                    explainer = build_explainer(name, model, **settings)
                exp, sec, mib = measure(
                    lambda: explainer.attribute(inputs, int(tgt), samples),
                    inputs.device)
            except UnsupportedModelError as e:
                not_applicable[name] = str(e)
                log(f'{name}: n/a ({e})')
                continue
            except ConfigError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded, goes on
                failures.append(dict(method=name, clip=ci, video=video,
                                     error=f'{type(e).__name__}: {e}'))
                log(f'{name} on {osp.basename(video)}: failed ({e})')
                continue
            batch = ExplainedBatch(
                positions=[0], indices=[ci], inputs=inputs,
                data_samples=samples, explanation=exp, adapter=adapter,
                explainer_cfg=dict(type=name, **settings), ranks=[0])
            row = dict(seconds=round(sec, 4), peak_mib=_finite(
                round(mib, 1) if mib == mib else None))
            di = _scores(del_metric, batch)
            row.update(deletion=di['deletion'], insertion=di['insertion'],
                       faithfulness=di['insertion'] - di['deletion'])
            row['average_drop'] = _scores(drop_metric, batch)['drop']
            if sanity:
                try:
                    steps = _scores(rand_metric, batch)['steps']
                    row.update(sanity_head=float(steps[0]),
                               sanity_last=float(steps[-1]),
                               sanity_passed=bool(
                                   steps[-1] < rand_metric.threshold))
                except Exception as e:  # noqa: BLE001 - recorded
                    row.update(sanity_head=None, sanity_last=None,
                               sanity_passed=None,
                               sanity_error=f'{type(e).__name__}: {e}')
            exps[name] = exp
            rows[name] = row
            log(f'{name} on {osp.basename(video)}: {sec:.2f} s, deletion '
                f'{row["deletion"]:.3f}, insertion {row["insertion"]:.3f}')
        baseline = None
        if exps:  # a random map through the same metrics
            ref = next(iter(exps.values()))
            rnd = random_map(tuple(ref.maps.shape), generator=gen)
            fake = SimpleNamespace(maps=rnd.to(ref.maps.device),
                                   targets=ref.targets)
            batch = ExplainedBatch([0], [ci], inputs, samples, fake, adapter)
            di = _scores(del_metric, batch)
            baseline = dict(deletion=di['deletion'],
                            insertion=di['insertion'],
                            average_drop=_scores(drop_metric, batch)['drop'])
        done = list(exps)
        agree = agreement_matrix({m: e.maps[0] for m, e in exps.items()})
        per_clip.append(dict(video=video, target=None if tgt == 'pred'
                             else int(tgt), methods=rows, random=baseline,
                             agreement=dict(methods=done,
                                            matrix=agree.round(4).tolist())))
        all_exps.append(exps)
        if out_dir is not None:
            tracks.append({m: video_track(e, sample, labels)
                           for m, e in exps.items()})
    if rand_metric is None:  # no clip: the registration-order cascade
        rand_metric = ModelRandomization(cascade=sanity_cascade(
            unwrap_model(model)), max_samples=1, seed=seed)
    summary = _summarise(names, per_clip, not_applicable, failures,
                         settings_used, budget, rand_metric)
    summary['recommendation'] = recommend(summary)
    files: Dict[str, str] = {}
    if out_dir is not None:
        from ..outputs import write_comparison
        files = write_comparison(out_dir, summary, tracks, all_exps)
    return Comparison(summary, files, all_exps)


METRIC_KEYS = ('faithfulness', 'deletion', 'insertion', 'average_drop', 'seconds',
               'peak_mib', 'sanity_head', 'sanity_last')


def _summarise(names, per_clip, not_applicable, failures, settings, budget,
               rand_metric) -> Dict[str, Any]:
    """Means (and, over several clips, 95 % normal intervals) per method."""
    methods: Dict[str, Dict[str, Any]] = {}
    for name in names:
        rows = [c['methods'][name] for c in per_clip
                if name in c['methods']]
        if not rows:
            continue
        out: Dict[str, Any] = dict(clips=len(rows))
        for k in METRIC_KEYS:
            vals = [r.get(k) for r in rows if r.get(k) is not None]
            out[k] = float(np.mean(vals)) if vals else None
            if len(vals) > 1:
                out[k + '_ci95'] = float(1.96 * np.std(vals, ddof=1) /
                                         np.sqrt(len(vals)))
        passed = [r.get('sanity_passed') for r in rows
                  if r.get('sanity_passed') is not None]
        out['sanity_passed'] = bool(out['sanity_last'] <
                                    rand_metric.threshold) if passed else None
        methods[name] = out
    rnd = [c['random'] for c in per_clip if c['random']]
    random = None
    if rnd:
        random = {k: float(np.mean([r[k] for r in rnd]))
                  for k in ('deletion', 'insertion', 'average_drop')}
        random['faithfulness'] = random['insertion'] - random['deletion']
        for m in methods.values():
            m['beats_random'] = bool(m['deletion'] < random['deletion'] and
                                     m['insertion'] > random['insertion'])
    # agreement: mean over the clips of each pair's correlation
    done = [n for n in names if n in methods]
    agree = mean_agreement(done, [c['agreement'] for c in per_clip])
    agree.pop('samples')
    from ..version import __version__
    return dict(
        budget=budget, budget_description=BUDGETS[budget]['description'],
        metrics=dict(
            deletion='deletion AUC (lower is better), '
            f"{BUDGETS[budget]['deletion']}",
            insertion='insertion AUC (higher is better)',
            faithfulness='insertion - deletion (higher is better)',
            average_drop='average drop, % (lower is better)',
            sanity='Spearman rank correlation of the raw map with the '
            'trained model\'s after re-initialising '
            f'{" then ".join(rand_metric.cascade)} (cumulative); passes '
            f'below {rand_metric.threshold}',
            seconds='wall time of the explanation',
            peak_mib='peak memory of the explanation above the level '
            'before it (MiB)'),
        sanity_cascade=list(rand_metric.cascade),
        sanity_threshold=rand_metric.threshold,
        videos=[c['video'] for c in per_clip], methods=methods,
        random=random, settings=settings,
        not_applicable=[dict(method=k, reason=v)
                        for k, v in not_applicable.items()],
        failures=failures,
        agreement=agree,
        per_clip=per_clip, mmxai_version=__version__)
