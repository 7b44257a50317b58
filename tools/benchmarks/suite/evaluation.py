"""Per-model evaluation (explain, score, randomisation test) and the pool
that runs the models and the speed benchmark in worker processes."""
import argparse
import json
import multiprocessing
import os
import os.path as osp
import subprocess
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Dict, List, Optional, Sequence, Tuple

from .settings import (PERTURBATION, SKIPPED, VARIANTS, base_method,
                       cascade_for, method_settings, model_config,
                       model_title, run_settings)


def balanced_indices(dataset, n: int) -> List[int]:
    """First ``n`` dataset indices, taking classes in turn."""
    by_class: Dict[int, List[int]] = {}
    for i in range(len(dataset)):
        by_class.setdefault(int(dataset.get_data_info(i)['label']),
                            []).append(i)
    out, k = [], 0
    while len(out) < n and any(k < len(v) for v in by_class.values()):
        for c in sorted(by_class):
            if k < len(by_class[c]) and len(out) < n:
                out.append(by_class[c][k])
        k += 1
    return out


def distinct_methods(names: Sequence[str], model: str = '',
                     target_layers: Optional[List[str]] = None) -> List[str]:
    """``names`` without the aliases that would repeat a row: a name whose
    explainer class and benchmark settings an earlier name already has
    (``le_grad`` after ``legrad``); an alias with other settings stays
    (``supervoxel_loco``: ``loco`` at its default budget)."""
    import json
    from mmxai.explainers import method_names
    classes = method_names()
    seen, out = set(), []
    for m in names:
        key = (classes.get(m, m), json.dumps(
            method_settings(m, model, target_layers), sort_keys=True,
            default=str))
        if key not in seen:
            seen.add(key)
            out.append(m)
    return out


def test_split(model, data_root: str):
    """The held-out split under ``data_root`` through ``model.cfg``'s test
    pipeline."""
    from mmaction.registry import DATASETS
    ds_cfg = model.cfg.test_dataloader.dataset.copy()
    ds_cfg.ann_file = osp.join(data_root, 'test.txt')
    ds_cfg.data_prefix = dict(video=data_root)
    ds_cfg.pop('_scope_', None)
    return DATASETS.build(ds_cfg)


def evaluate_model(name: str, args: argparse.Namespace,
                   cfg_options: Optional[dict] = None,
                   target_layers: Optional[List[str]] = None,
                   sanity_check: bool = True) -> dict:
    """Explain and score ``args.clips`` held-out clips with every method
    (``cfg_options`` merged into the model's config, ``target_layers`` for
    the CAM methods as in :func:`method_settings`)."""
    t_start = time.time()
    import numpy as np
    import torch
    import mmxai  # noqa: F401
    from mmengine.dataset import pseudo_collate
    from mmxai.apis import init_recognizer
    from mmxai.errors import MMXAIError, UnsupportedModelError
    from mmxai.evaluation import deletion_insertion_curve, load_ground_truth
    from mmxai.evaluation.localization import (centre_map,
                                               localization_scores,
                                               random_map, scaled_tolerance,
                                               st_pointing_game)
    from mmxai.evaluation.sanity import cascading_randomization
    from mmxai.explainers import build_explainer, method_names
    torch.set_num_threads(1)

    cfg_path = model_config(name)
    ckpt = osp.join(args.ckpt_dir, f'{name}_synthetic.pth')
    model = init_recognizer(cfg_path, ckpt, cfg_options=cfg_options)
    dataset = test_split(model, args.data_root)
    indices = balanced_indices(dataset, args.clips)

    names = args.methods or distinct_methods(
        [m for m in method_names() if m not in SKIPPED], name,
        target_layers) + list(VARIANTS)
    explainers, na, failed = {}, {}, {}
    for m in names:
        try:
            explainers[m] = build_explainer(
                base_method(m), model,
                **method_settings(m, name, target_layers))
        except UnsupportedModelError as e:  # does not apply: n/a
            na[m] = str(e).split('\n')[0][:160]
        except (MMXAIError, TypeError, ValueError) as e:  # bad settings
            failed[m] = f'{type(e).__name__}: ' + str(e).split('\n')[0][:160]
    rows, curves, example = [], {}, None
    tol = None
    for ci, idx in enumerate(indices):
        data = pseudo_collate([dataset[idx]])
        with torch.no_grad():
            proc = model.data_preprocessor(data, False)
        inputs, sample = proc['inputs'], proc['data_samples'][0]
        label = int(sample.gt_label.view(-1)[0])
        adapter = next(iter(explainers.values())).adapter
        _, v, t, h, w = adapter.input_shape(inputs)
        masks, frames = load_ground_truth(dict(sample.metainfo), (v, t, h, w))
        mask, fr = torch.from_numpy(masks[0]), torch.from_numpy(frames[0])
        tol = scaled_tolerance(min(h, w))
        cell = max(1, round(args.cell * min(h, w) / 64))  # --cell is at 64 px
        with torch.no_grad():
            pred = int(adapter.scores(inputs).argmax(-1))
        maps: Dict[str, object] = {}
        secs: Dict[str, float] = {}
        for m, ex in explainers.items():
            if m in na or m in failed:
                continue
            t0 = time.perf_counter()
            try:
                exp = ex.attribute(inputs, target=label)
            except UnsupportedModelError as e:
                na[m] = str(e).split('\n')[0][:160]
                continue
            except Exception as e:  # a bug in the method: reported, not fatal
                line = (str(e).strip().split('\n') or [''])[-1]
                failed[m] = f'{type(e).__name__}: {line}'[:200]
                traceback.print_exc()
                continue
            secs[m] = time.perf_counter() - t0
            maps[m] = exp.maps[0, 0].float()
        g = torch.Generator().manual_seed(1000 + idx)
        maps['random map'] = random_map((t, h, w), g)
        maps['static random map'] = random_map((t, h, w), g, static=True)
        maps['centre map'] = centre_map((t, h, w))
        for m, mp in maps.items():
            r = dict(method=m, clip=int(idx), label=label, pred=pred,
                     seconds=secs.get(m, 0.0))
            r.update(localization_scores(mp, mask, fr, tol))
            # at the explained layers' resolution: half a 4x4 grid cell
            r['pointing_cell'] = float(st_pointing_game(mp, mask,
                                                        min(h, w) / 8))
            for mode in ('deletion', 'insertion'):
                curve, area = deletion_insertion_curve(
                    model, inputs, mp[None], label, steps=args.steps,
                    cell_size=(1, cell, cell),
                    batch_size=args.steps + 1, mode=mode)
                r[mode] = float(area[0])
                curves.setdefault(m, {}).setdefault(mode, []).append(
                    curve[0].tolist())
            rows.append(r)
        if example is None and pred == label:
            frames_u8 = adapter.to_video(data['inputs'][0][None].float())[
                0, 0].permute(1, 2, 3, 0).numpy().astype(np.uint8)
            example = dict(clip=int(idx), label=label, frames=frames_u8,
                           mask=masks[0], maps={k: np.asarray(vv)
                                                for k, vv in maps.items()})
        print(f'[{name}] clip {ci + 1}/{len(indices)} '
              f'({time.time() - t_start:.0f} s)', flush=True)

    # randomisation sanity check: non-perturbation methods
    sanity = {}
    checked = [m for m in explainers if m not in na and m not in failed
               and m not in PERTURBATION
               ] if sanity_check and not getattr(args, 'skip_sanity', False) \
        else []
    if checked:
        batch = pseudo_collate([dataset[i]
                                for i in indices[:args.sanity_clips]])
        with torch.no_grad():
            proc = model.data_preprocessor(batch, False)
        s_inputs = proc['inputs']
        s_labels = [int(s.gt_label.view(-1)[0])
                    for s in proc['data_samples']]
    cascade = cascade_for(name, model)
    for m in checked:
        settings = method_settings(m, name, target_layers)

        def explain(mdl, m=m, settings=settings):
            e = build_explainer(base_method(m), mdl, **settings)
            return e.attribute(s_inputs, target=s_labels).raw_maps[:, 0]

        try:
            steps = cascading_randomization(explain, model, cascade)
        except Exception as e:  # MMXAIError or a bug: reported in the table
            sanity[m] = dict(error=f'{type(e).__name__}: '
                             f'{str(e).splitlines()[0] if str(e) else ""}'[:160])
            continue
        sanity[m] = dict(steps=steps)
    # rows of a method that failed on a later clip would be a biased subset
    rows = [r for r in rows if r['method'] not in failed]
    curves = {k: v for k, v in curves.items() if k not in failed}
    return dict(model=name, title=model_title(name), rows=rows,
                curves=curves, na=na, failed=failed,
                sanity=sanity, cascade=cascade,
                example=_jsonable(example), tolerance=tol,
                num_params=int(sum(p.numel() for p in model.parameters())),
                input_shape=[int(s) for s in adapter.input_shape(inputs)],
                seconds=round(time.time() - t_start, 1),
                cpu_seconds=round(time.process_time(), 1),
                settings=run_settings(args), methods=list(explainers))


def result_path(args: argparse.Namespace, name: str) -> str:
    return osp.join(args.work_dir, f'{name}.json')


def reusable(name: str, args: argparse.Namespace) -> bool:
    """Whether ``--work-dir`` holds results of ``name`` newer than its
    checkpoint, computed with the same settings."""
    path = result_path(args, name)
    ckpt = osp.join(args.ckpt_dir, f'{name}_synthetic.pth')
    if not (osp.isfile(path) and osp.isfile(ckpt)) or \
            osp.getmtime(path) < osp.getmtime(ckpt):
        return False
    with open(path) as f:
        res = json.load(f)
    return res.get('settings') == run_settings(args)


def _jsonable(example: Optional[dict]) -> Optional[dict]:
    if example is None:
        return None
    return dict(clip=example['clip'], label=example['label'],
                frames=example['frames'].tolist(),
                mask=example['mask'].astype(int).tolist(),
                maps={k: v.round(4).tolist()
                      for k, v in example['maps'].items()})


def evaluate_to_file(name: str, args: argparse.Namespace) -> str:
    """:func:`evaluate_model` with the results written to ``--work-dir``."""
    res = evaluate_model(name, args)
    os.makedirs(args.work_dir, exist_ok=True)
    path = result_path(args, name)
    with open(path, 'w') as f:
        json.dump(res, f)
    return path


def _run_command(cmd: Sequence[str]) -> int:
    return subprocess.run(list(cmd)).returncode


def run_jobs(models: Sequence[str], args: argparse.Namespace,
             speed_cmd: Optional[Sequence[str]] = None
             ) -> Tuple[List[str], Optional[int]]:
    """Evaluate ``models`` into ``--work-dir`` and run ``speed_cmd``,
    ``args.jobs`` at a time (speed takes the first slot free after the
    models). Each task gets a fresh spawned interpreter, as the former
    ``--worker`` subprocesses did: every model starts from the same torch
    state (default RNG, one thread). Returns the failed models and the speed
    command's exit status (``None``: not run)."""
    failed, speed_rc = [], None
    if not models and not speed_cmd:
        return failed, speed_rc
    with ProcessPoolExecutor(
            max_workers=max(1, args.jobs),
            mp_context=multiprocessing.get_context('spawn'),
            max_tasks_per_child=1) as pool:
        futures = {pool.submit(evaluate_to_file, n, args): n for n in models}
        speed = pool.submit(_run_command, speed_cmd) if speed_cmd else None
        for fut in as_completed(futures):
            try:
                fut.result()
            except Exception:
                traceback.print_exc()
                failed.append(futures[fut])
        if speed is not None:
            try:
                speed_rc = speed.result()
            except Exception:
                traceback.print_exc()
    return [n for n in models if n in failed], speed_rc
