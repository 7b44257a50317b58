"""Explain a whole test (or val) dataset through MMEngine's Runner.

One record per sample under ``out_dir``, written by the one
:class:`~mmxai.outputs.OutputWriter` (``DATASET_LAYOUT``):
``records/<index>.json`` (status, target, top-5, files, or the error),
``maps/<index>.npz`` and, when asked for, ``views/<index>/view<v>.mp4`` ...;
then a ``manifest.json``. A sample's files land together, its record last.
A re-run skips samples whose record says ``ok`` (and whose files exist); a
sample that fails (e.g. a corrupt video) is recorded with its error and the
run goes on. Under ``torchrun`` (``launcher='pytorch'``) every process
explains its shard (MMEngine's ``DefaultSampler``) and the main process
writes the manifest:

    torchrun --nproc_per_node 2 tools/explain.py CONFIG CKPT \
        --out-dir OUT --launcher pytorch
"""
import copy
import os
import os.path as osp
import shutil
import tempfile
import time
import traceback
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..errors import ConfigError, InputError, MMXAIError
from ..utils.pipeline import loader_pipeline
from ..preflight import (check_annotation_file, check_target,
                         config_num_classes)
from ..fileio import check_writable, json_safe, read_json
from ..outputs import (DATASET_DEFAULT, DATASET_LAYOUT, OutputWriter,
                       RankOutputs, view_tracks)

__all__ = ['explain_dataset']


def _record_path(out_dir: str, idx: int) -> str:
    return osp.join(out_dir, DATASET_LAYOUT.path('json', idx))


def _build_runner(cfg, out_dir: str, split: str, launcher: str):
    from mmengine.runner import Runner
    loader_key = f'{split}_dataloader'
    if not isinstance(cfg.get(loader_key), dict):
        raise ConfigError(f'config has no {loader_key}')
    cfg = copy.deepcopy(cfg)
    cfg.launcher = launcher
    cfg.work_dir = out_dir
    cfg.load_from = None
    cfg.resume = False
    cfg.custom_hooks = []  # the run itself explains; no ExplainHook twice
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper',
                'param_scheduler', 'val_dataloader', 'val_cfg',
                'val_evaluator'):
        cfg.pop(key, None)
    cfg.test_dataloader = cfg[loader_key]
    cfg.setdefault('test_cfg', dict(type='TestLoop'))
    cfg.setdefault('test_evaluator', dict(type='AccMetric'))
    # no vis_data/ for a dataset run; a visualizer of its own (MMEngine's
    # default would reuse the last run's, with that run's save_dir)
    cfg.visualizer = dict(type='Visualizer', vis_backends=[],
                          name=f'mmxai_explain_dataset_{osp.basename(out_dir)}')
    cfg.default_hooks = dict(timer=None, logger=None, param_scheduler=None,
                             checkpoint=None, sampler_seed=None)
    from mmxai.apis.model import strip_pretrained
    strip_pretrained(cfg.model)
    if launcher != 'none' and not torch.cuda.is_available():
        _init_cpu_dist(cfg)
        # DDP on CPU takes no device_ids (MMEngine passes [LOCAL_RANK])
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        wrapper.setdefault('type', 'MMDistributedDataParallel')
        wrapper.setdefault('device_ids', None)
        wrapper.setdefault('broadcast_buffers', False)
        cfg.model_wrapper_cfg = wrapper
    return Runner.from_cfg(cfg)


def _toolbox_notice(record) -> bool:
    """False for MMEngine's notices about its own deprecated internals
    (``FileClient``, ``HardDiskBackend``) that the toolbox's decoders
    trigger on every sample: nothing a user can act on."""
    text = str(record.getMessage())
    return not ('will be deprecated in future' in text or
                'is the alias of' in text)


def _toolbox_step(what: str, fn, *args):
    """``fn(*args)``; a failure (a malformed annotation file, a config key
    the toolbox refuses) becomes one line naming the step."""
    try:
        return fn(*args)
    except (MMXAIError, KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001
        text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ''
        raise ConfigError(f'cannot {what} from the config: '
                          f'{type(e).__name__}: {text}; check the config '
                          'and --cfg-options') from None


def _keep_logs(scratch: str, out_dir: Optional[str]) -> None:
    """Move the Runner's log folders into ``out_dir/logs`` (if given), then
    remove the scratch folder."""
    try:
        if out_dir is not None and osp.isdir(scratch):
            for name in os.listdir(scratch):
                dst = osp.join(out_dir, 'logs', name)
                if not osp.exists(dst):
                    os.makedirs(osp.dirname(dst), exist_ok=True)
                    shutil.move(osp.join(scratch, name), dst)
    except OSError:
        pass  # logs are informative only
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _init_cpu_dist(cfg) -> None:
    """Start the process group on a machine without CUDA.

    MMEngine 0.10.7's ``init_dist('pytorch')`` calls
    ``torch.cuda.set_device`` first, which fails on CPU-only torch; the
    Runner skips its own initialisation when a group exists.
    """
    import torch.distributed as dist
    if dist.is_available() and not dist.is_initialized() and \
            'WORLD_SIZE' in os.environ:
        dist_cfg = dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {})
        backend = dist_cfg.pop('backend', 'gloo')
        if backend == 'nccl':
            backend = 'gloo'
        dist.init_process_group(backend=backend)


def explain_dataset(config: Any,
                    checkpoint: Optional[str],
                    out_dir: str,
                    method: Any = 'gradcam',
                    split: str = 'test',
                    launcher: str = 'none',
                    resume: bool = True,
                    trust_checkpoint: bool = False,
                    cfg_options: Optional[dict] = None,
                    target: Any = 'pred',
                    outputs: Sequence[str] = DATASET_DEFAULT,
                    allow_partial_checkpoint: bool = False,
                    **method_options) -> str:
    """Explain every sample of the config's ``<split>_dataloader`` dataset.

    Args:
        config: config path, ``mmaction::`` name or ``mmengine.Config``.
        checkpoint: weights (loaded safely), or None for random weights.
        out_dir: output folder (also the Runner's work dir).
        method: method name or explainer config dict.
        split: ``'test'`` or ``'val'``.
        launcher: ``'none'`` or ``'pytorch'`` (under ``torchrun``).
        resume: skip samples already recorded as ``ok``.
        trust_checkpoint: allow checkpoints needing non-allowlisted types.
        cfg_options: dotted-key overrides merged into the config.
        target: ``'pred'``, ``'gt'`` or a class index.
        outputs: names of :mod:`mmxai.outputs` (``json`` is always written:
            the records are what a re-run resumes from).
        allow_partial_checkpoint: load a checkpoint that does not fit the
            model anyway (the warning goes into every record).
        **method_options: explainer settings (e.g. ``target_layers``).
    Returns:
        Path of ``manifest.json``.
    """
    from mmengine.dist import barrier, get_rank, get_world_size, \
        is_main_process
    from mmengine.logging import MMLogger

    from mmxai.adapters import unwrap_model
    from mmxai.apis.model import _load_config
    from mmxai.checkpoint import load_checkpoint
    from mmxai.explainers import build_explainer
    if split not in ('test', 'val'):
        raise ConfigError(f"split must be 'test' or 'val', got {split!r}")
    writer = OutputWriter(('json', ) + tuple(outputs), DATASET_LAYOUT)
    cfg = _load_config(config, cfg_options)
    out_dir = osp.abspath(out_dir)
    check_writable(out_dir)
    check_annotation_file(cfg, split)
    check_target(target, config_num_classes(cfg), dataset=True)
    # The Runner's logs and config dump go to a scratch folder until the
    # inputs are known good: a bad checkpoint, method or layer writes
    # nothing into out_dir.
    scratch = tempfile.mkdtemp(prefix='mmxai-runner-')
    started = False
    try:
        runner = _toolbox_step('build the Runner', _build_runner, cfg,
                               scratch, split, launcher)
        logger = MMLogger.get_current_instance()
        logger.addFilter(_toolbox_notice)
        model = unwrap_model(runner.model)
        if checkpoint is not None:
            load_checkpoint(model, checkpoint,
                            trust_checkpoint=trust_checkpoint,
                            allow_partial=allow_partial_checkpoint)
        model.eval()
        explainer = build_explainer(method, model, **method_options)
        explainer.adapter.pipeline_config = loader_pipeline(
            runner.cfg.test_dataloader)
        loader = _toolbox_step(f'build the {split} dataset',
                               runner.build_dataloader,
                               runner.cfg.test_dataloader)
        dataset = loader.dataset
        if len(dataset) == 0:
            raise InputError(f'the {split} dataset of the config has no '
                             'samples (check its ann_file and data_prefix)')
        check_target(target, explainer.adapter.num_classes, dataset=True)
        classes = (getattr(dataset, 'metainfo', None) or {}).get('classes')
        try:  # this process's shard, padding duplicates dropped
            mine = list(dict.fromkeys(int(i) for i in loader.sampler))
        except TypeError:
            mine = list(range(get_rank(), len(dataset), get_world_size()))
        logger.info(f'explain_dataset: {len(mine)} of {len(dataset)} '
                    f'samples on rank {get_rank()} -> {out_dir}')
        run = _run_settings(explainer, target)
        done = _finished(out_dir, mine, run) if resume else set()
        started = True  # inputs are good: outputs may be written
        for idx in mine:
            if idx in done:
                continue
            _explain_one(explainer, dataset, idx, out_dir, target, classes,
                         logger, writer, run)
        barrier()
        manifest = osp.join(out_dir, 'manifest.json')
        info = {}
        if getattr(model, 'mmxai_checkpoint_warning', None):
            info['checkpoint_warning'] = model.mmxai_checkpoint_warning
        if is_main_process():
            _write_manifest(writer, out_dir, len(dataset), explainer,
                            dict(config=getattr(cfg, 'filename', None),
                                 checkpoint=checkpoint, split=split,
                                 target=str(target),
                                 world_size=get_world_size(), **info))
        barrier()
        return manifest
    finally:
        _keep_logs(scratch, out_dir if started else None)


def _run_settings(explainer, target) -> dict:
    """What makes a record: method, its settings, the requested target."""
    return dict(method=explainer.name,
                settings=json_safe(explainer.settings()), target=str(target))


def _finished(out_dir: str, indices, run: dict) -> set:
    """Indices whose record says ``ok`` and whose files exist: a re-run
    skips them. Refuses records made with other settings (they would be
    skipped and the manifest would claim the new settings)."""
    done = set()
    for idx in indices:
        rec = read_json(_record_path(out_dir, idx))
        if not isinstance(rec, dict) or rec.get('status') != 'ok':
            continue
        old = rec.get('run') or dict(
            method=rec.get('method'), settings={
                k: v for k, v in (rec.get('settings') or {}).items()
                if k not in ('seconds', 'checkpoint_warning')},
            target=run['target'])
        if old != run:
            diff = [k for k in ('method', 'target', 'settings')
                    if old.get(k) != run[k]]
            raise ConfigError(
                f'{out_dir} holds records made with another {diff[0]} '
                f'({old.get(diff[0])!r}, now {run[diff[0]]!r}); choose '
                'another --out-dir, or redo them with --no-resume')
        if all(_intact(osp.join(out_dir, p)) for p in rec.get('files', [])):
            done.add(idx)
    return done


def _intact(path: str) -> bool:
    """The file exists, is not empty and, for ``.npz``/``.json``, loads
    (a resumed run redoes a sample whose files were damaged)."""
    try:
        if not osp.isfile(path) or osp.getsize(path) == 0:
            return False
        if path.endswith('.npz'):
            import numpy as np
            with np.load(path, allow_pickle=False) as z:
                for key in z.files:
                    z[key]
        elif path.endswith('.json'):
            return read_json(path) is not None
        return True
    except Exception:  # noqa: BLE001 - damaged: redo it
        return False


def _explain_one(explainer, dataset, idx: int, out_dir: str, target,
                 classes, logger, writer: OutputWriter,
                 run: Optional[dict] = None) -> None:
    from mmengine.dataset import pseudo_collate

    from ..adapters import inputs_to_frames
    rec: Dict[str, Any] = dict(index=idx)
    try:
        rec['filename'] = dataset.get_data_info(idx).get('filename')
    except Exception:  # noqa: BLE001 - informative only
        pass
    start = time.perf_counter()
    ranks, exp, frames = [], None, None
    try:
        batch = pseudo_collate([dataset[idx]])
        exp = explainer.explain(batch, target).cpu()
        warning = getattr(explainer.model, 'mmxai_checkpoint_warning', None)
        if warning:
            exp.settings['checkpoint_warning'] = warning
        if writer.needs_frames:
            with torch.no_grad():
                data = explainer.model.data_preprocessor(batch, False)
            frames = inputs_to_frames(explainer.model, data['inputs'])[0]
        tracks = view_tracks(exp, frames, range(exp.maps.shape[1]),
                             plot_title=f'sample {idx} view {{v}}') \
            if writer.wants('video', 'gif', 'montage', 'plot') else []
        ranks = [RankOutputs(exp.to_numpy(), tracks)]
        rec.update(status='ok')
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # noqa: BLE001 - recorded, the run goes on
        rec.update(status='failed', error=f'{type(e).__name__}: {e}'
                   .strip().splitlines()[0][:500],
                   traceback=traceback.format_exc(limit=3)[-2000:])
        logger.warning(f'sample {idx} failed: {rec["error"]}')

    def record(files):
        if rec['status'] == 'ok':
            rec.update(files=files.all(), **exp.summary(classes))
            if run is not None:
                rec['run'] = run
        rec['seconds'] = round(time.perf_counter() - start, 3)
        return rec

    writer.write_sample(out_dir, idx, ranks, record=record,
                        explanation=exp, extras_frames=None if frames is None
                        else frames[0], class_names=classes)


def _write_manifest(writer: OutputWriter, out_dir: str, num: int,
                    explainer, info: dict) -> None:
    samples: List[dict] = []
    for idx in range(num):
        path = _record_path(out_dir, idx)
        rec = read_json(path)
        if not isinstance(rec, dict):
            rec = dict(index=idx, status='missing')
        entry = {k: rec.get(k) for k in ('index', 'filename', 'status',
                                         'error', 'files')
                 if rec.get(k) is not None}
        if rec.get('status') == 'ok':
            entry['record'] = osp.relpath(path, out_dir)
            entry['target'] = rec.get('target')
        samples.append(entry)
    counts = {s: sum(e['status'] == s for e in samples)
              for s in ('ok', 'failed', 'missing')}
    writer.write_index(out_dir, 'manifest.json', dict(
        method=explainer.name, settings=explainer.settings(), **info,
        num_samples=num, counts=counts, samples=samples))
