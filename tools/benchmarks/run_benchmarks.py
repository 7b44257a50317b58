#!/usr/bin/env python
"""Regenerate ``docs/benchmarks.md``: localisation, faithfulness, sanity and
speed of every mmxai method on the three synthetic benchmark recognizers.

    .venv/bin/python tools/benchmarks/run_benchmarks.py [--clips 12]
        [--jobs 2] [--skip-speed] [--out docs/benchmarks.md]

Steps: (1) write the held-out split of the synthetic benchmark data
(deterministic; ``data/benchmark_synthetic/test.txt``); (2) for each model
(``configs/benchmark/*_synthetic.py`` + ``checkpoints/benchmark/*.pth``,
trained by ``train_benchmark_models.py``) explain ``--clips`` held-out clips
(balanced over classes, target = ground-truth class) with every registered
method and two baseline maps (random, centre), and score each map:
spatio-temporal pointing game, energy in the evidence tube, temporal
grounding, deletion and insertion AUC; run the model parameter randomisation
test; (3) run ``bench_speed.py``; (4) write the report and the figures
(``docs/figures/benchmark_*.png``). Models are evaluated in parallel worker
processes (``--jobs``), one torch thread each.
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time
from typing import Dict, List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

MODELS = {
    'i3d': dict(title='I3D (tiny ResNet3d-18)'),
    'tsm': dict(title='TSM (MobileNetV2-0.5)'),
    'transformer': dict(title='UniFormer (tiny video transformer)'),
}

#: Benchmark settings per method (modest budgets: the whole benchmark must
#: regenerate in 30 minutes on 2 cores). Unknown methods get defaults.
METHOD_SETTINGS = {
    'gradcam': {},
    'gradcam++': {},
    'saliency_tubes': {},
    'cfp': {},
    'saliency': {},
    'integrated_gradients': dict(n_steps=16, batch_size=16),
    'smoothgrad': dict(n_samples=8, batch_size=8),
    'occlusion': dict(window=(4, 16, 16), stride=(4, 16, 16), batch_size=32),
    'rise': dict(num_masks=128, cells=(4, 4, 4), batch_size=32),
    'step': dict(areas=(0.05, ), max_iter=60, core_start=30, batch_size=1),
    'lime': dict(num_samples=128, n_segments=48, batch_size=32),
    'kernel_shap': dict(num_samples=128, n_segments=48, batch_size=32),
    'attention_rollout': {},
    'attention_relevance': {},
}
#: Configurations evaluated as rows of their own: name -> (method,
#: settings on top of the method's benchmark settings). The temporal-mean
#: baseline removes the clip's motion and keeps its appearance (every
#: frame replaced by the mean frame), the natural "absence" for a
#: recogniser of actions.
VARIANTS = {
    'integrated_gradients[temporal_mean]': (
        'integrated_gradients', dict(baseline='temporal_mean')),
}
#: Methods left out of the per-clip evaluation, with the reason.
SKIPPED = {
    'captum': "wrapper around Captum's algorithms: see the speed table",
    'gradcampp': 'alias of gradcam++',
}
#: Methods that do not compute gradients or perturb the input (for the
#: randomisation test: every method except the perturbation ones is run).
PERTURBATION = {'occlusion', 'rise', 'step', 'lime', 'kernel_shap'}
GRADIENT = {'gradcam', 'gradcam++', 'saliency', 'integrated_gradients',
            'integrated_gradients[temporal_mean]',
            'smoothgrad', 'attention_relevance'}

#: Layers randomised top-down in the sanity check (cumulative).
#: Adebayo et al.'s full cascade: from the head down to the first layer
#: (TSM's backbone returns stage 5: layers 6-7 and conv2 are unused).
CASCADES = {
    'i3d': ['cls_head', 'backbone.layer4', 'backbone.layer3',
            'backbone.layer2', 'backbone.layer1', 'backbone.conv1'],
    'tsm': ['cls_head', 'backbone.layer5', 'backbone.layer4',
            'backbone.layer3', 'backbone.layer2', 'backbone.layer1',
            'backbone.conv1'],
    'transformer': ['cls_head', 'backbone.norm', 'backbone.blocks4',
                    'backbone.patch_embed4', 'backbone.blocks3',
                    'backbone.patch_embed3', 'backbone.blocks2',
                    'backbone.patch_embed2', 'backbone.blocks1',
                    'backbone.patch_embed1'],
}
#: Grad-CAM layers where the adapter's default is not the fair choice:
#: UniFormer's output is a 2x2 grid at 64 px; its last stage-3 attention
#: block gives the 8x4x4 grid the other models' CAMs have.
TARGET_LAYERS = {'transformer': ['backbone.blocks3.1']}
CAM_METHODS = {'gradcam', 'gradcam++'}
#: Every CAM-type method (the last two read the head's input by definition).
CAM_TYPE = ('gradcam', 'gradcam++', 'saliency_tubes', 'cfp')
BASELINES = ('random map', 'static random map', 'centre map')
SANITY_PASS = 0.5  # mean Spearman below this after randomisation: passes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--methods', nargs='+', default=None,
                   help='default: every registered method')
    p.add_argument('--clips', type=int, default=12,
                   help='held-out clips per model (balanced over classes)')
    p.add_argument('--sanity-clips', type=int, default=4)
    p.add_argument('--steps', type=int, default=16,
                   help='deletion/insertion steps')
    p.add_argument('--cell', type=int, default=8,
                   help='deletion/insertion unit: 1 x cell x cell pixels at '
                   '64 px (scaled with the input size)')
    p.add_argument('--data-root', default='data/benchmark_synthetic')
    p.add_argument('--ckpt-dir', default='checkpoints/benchmark')
    p.add_argument('--out', default='docs/benchmarks.md')
    p.add_argument('--fig-dir', default='docs/figures')
    p.add_argument('--work-dir', default='work_dirs/benchmarks')
    p.add_argument('--jobs', type=int, default=2)
    p.add_argument('--skip-speed', action='store_true')
    p.add_argument('--reuse', action='store_true',
                   help='reuse a model\'s results from --work-dir when they '
                   'are newer than its checkpoint and used the same settings')
    p.add_argument('--speed-args', default='',
                   help='extra arguments for bench_speed.py')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------- worker
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


def test_split(model, data_root: str):
    """The held-out split under ``data_root`` through ``model.cfg``'s test
    pipeline."""
    from mmaction.registry import DATASETS
    ds_cfg = model.cfg.test_dataloader.dataset.copy()
    ds_cfg.ann_file = osp.join(data_root, 'test.txt')
    ds_cfg.data_prefix = dict(video=data_root)
    ds_cfg.pop('_scope_', None)
    return DATASETS.build(ds_cfg)


def base_method(name: str) -> str:
    """The registered method behind a benchmark row."""
    return VARIANTS.get(name, (name, ))[0]


def method_settings(method: str, model: str = '',
                    target_layers: Optional[List[str]] = None) -> dict:
    """Benchmark settings of ``method`` (on benchmark ``model``), with
    progress bars off. ``target_layers`` replaces the CAM methods' layers
    (``[]``: the adapter's default)."""
    import inspect
    from mmxai.explainers import method_names
    from mmxai.registry import EXPLAINERS
    method, extra = VARIANTS.get(method, (method, {}))
    settings = dict(METHOD_SETTINGS.get(method, {}), **extra)
    cls = EXPLAINERS.get(method_names().get(method, method))
    if cls is not None and any(
            'progress' in inspect.signature(c.__init__).parameters
            for c in cls.__mro__ if '__init__' in vars(c)):
        settings['progress'] = False
    layers = TARGET_LAYERS.get(model) if target_layers is None \
        else target_layers
    if method in CAM_METHODS and layers:
        settings['target_layers'] = list(layers)
    return settings


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
    from mmxai.errors import MMXAIError
    from mmxai.evaluation import deletion_insertion_curve, load_ground_truth
    from mmxai.evaluation.localization import (centre_map,
                                               localization_scores,
                                               random_map, scaled_tolerance,
                                               st_pointing_game)
    from mmxai.evaluation.sanity import cascading_randomization
    from mmxai.explainers import build_explainer, method_names
    torch.set_num_threads(1)

    cfg_path = osp.join(ROOT, 'configs', 'benchmark', f'{name}_synthetic.py')
    ckpt = osp.join(args.ckpt_dir, f'{name}_synthetic.pth')
    model = init_recognizer(cfg_path, ckpt, cfg_options=cfg_options)
    dataset = test_split(model, args.data_root)
    indices = balanced_indices(dataset, args.clips)

    names = args.methods or [m for m in method_names()
                             if m not in SKIPPED] + list(VARIANTS)
    explainers, na = {}, {}
    for m in names:
        try:
            explainers[m] = build_explainer(
                base_method(m), model,
                **method_settings(m, name, target_layers))
        except (MMXAIError, TypeError, ValueError) as e:
            na[m] = str(e).split('\n')[0][:160]
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
            if m in na:
                continue
            t0 = time.perf_counter()
            try:
                exp = ex.attribute(inputs, target=label)
            except MMXAIError as e:
                na[m] = str(e).split('\n')[0][:160]
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
    checked = [m for m in explainers if m not in na and m not in PERTURBATION
               ] if sanity_check else []
    if checked:
        batch = pseudo_collate([dataset[i]
                                for i in indices[:args.sanity_clips]])
        with torch.no_grad():
            proc = model.data_preprocessor(batch, False)
        s_inputs = proc['inputs']
        s_labels = [int(s.gt_label.view(-1)[0])
                    for s in proc['data_samples']]
    for m in checked:
        settings = method_settings(m, name, target_layers)

        def explain(mdl, m=m, settings=settings):
            e = build_explainer(base_method(m), mdl, **settings)
            return e.attribute(s_inputs, target=s_labels).raw_maps[:, 0]

        try:
            steps = cascading_randomization(explain, model, CASCADES[name])
        except MMXAIError as e:
            sanity[m] = dict(error=str(e)[:160])
            continue
        sanity[m] = dict(steps=steps)
    return dict(model=name, rows=rows, curves=curves, na=na, sanity=sanity,
                example=_jsonable(example), tolerance=tol,
                num_params=int(sum(p.numel() for p in model.parameters())),
                input_shape=[int(s) for s in adapter.input_shape(inputs)],
                seconds=round(time.time() - t_start, 1),
                cpu_seconds=round(time.process_time(), 1),
                settings=_run_settings(args), methods=list(explainers))


def _reusable(name: str, args: argparse.Namespace) -> bool:
    path = osp.join(args.work_dir, f'{name}.json')
    ckpt = osp.join(args.ckpt_dir, f'{name}_synthetic.pth')
    if not (osp.isfile(path) and osp.isfile(ckpt)) or \
            osp.getmtime(path) < osp.getmtime(ckpt):
        return False
    with open(path) as f:
        res = json.load(f)
    return res.get('settings') == _run_settings(args)


def _run_settings(args: argparse.Namespace) -> dict:
    return dict(clips=args.clips, steps=args.steps, cell=args.cell,
                sanity_clips=args.sanity_clips, methods=args.methods,
                method_settings=json.loads(json.dumps(METHOD_SETTINGS)),
                variants=json.loads(json.dumps(VARIANTS)))


def _jsonable(example: Optional[dict]) -> Optional[dict]:
    if example is None:
        return None
    return dict(clip=example['clip'], label=example['label'],
                frames=example['frames'].tolist(),
                mask=example['mask'].astype(int).tolist(),
                maps={k: v.round(4).tolist()
                      for k, v in example['maps'].items()})


# --------------------------------------------------------------- report
def summarise(res: dict) -> Dict[str, dict]:
    """Per method: means of every score and of the seconds per clip."""
    import numpy as np
    out: Dict[str, dict] = {}
    for r in res['rows']:
        out.setdefault(r['method'], {k: [] for k in (
            'pointing', 'pointing_cell', 'energy', 'temporal_grounding',
            'temporal_energy',
            'deletion', 'insertion', 'seconds')})
        for k, v in out[r['method']].items():
            v.append(r[k])
    return {m: {k: float(np.mean(v)) for k, v in d.items()}
            for m, d in out.items()}


def sanity_table(res: dict) -> Dict[str, dict]:
    out = {}
    for m, s in res['sanity'].items():
        if 'error' in s:
            out[m] = dict(error=s['error'])
            continue
        out[m] = dict(head=s['steps'][0]['spearman'],
                      top=s['steps'][-1]['spearman'],
                      per_step=[st['spearman'] for st in s['steps']],
                      layers=s['steps'][-1]['layers'])
    return out


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


def save_figures(results: Dict[str, dict], fig_dir: str) -> List[str]:
    """Map grids (one clip per model) and mean deletion/insertion curves."""
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
        fig.suptitle(f'{MODELS[name]["title"]}: held-out clip {ex["clip"]} '
                     '(green/white: evidence mask); maps normalised per clip',
                     fontsize=7)
        fig.tight_layout(pad=0.2, rect=(0, 0, 1, 0.97))
        path = osp.join(fig_dir, f'benchmark_maps_{name}.png')
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
    path = osp.join(fig_dir, 'benchmark_deletion_insertion.png')
    fig.savefig(path, dpi=80)
    plt.close(fig)
    paths.append(path)
    return paths


def machine_line() -> str:
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return (f'{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, '
            f'Python {platform.python_version()}')


def fmt(v, nd=2) -> str:
    return '-' if v is None else f'{v:.{nd}f}'


def write_report(args, results, accuracy, speed_md, figs, elapsed, machine,
                 load_start, load_end, cpu_s=float('nan'),
                 reused=()) -> str:
    lines = ['# Benchmarks', '',
             'Regenerate everything on this page (tables, figures) with one '
             'command (the models are trained separately, see below):', '',
             '```', f'.venv/bin/python tools/benchmarks/run_benchmarks.py '
             f'--clips {args.clips} --jobs {args.jobs}', '```', '',
             f'Machine: {machine}. This run took **{elapsed / 60:.1f} min** '
             f'of wall time (load average {load_start:.1f} at the start, '
             f'{load_end:.1f} at the end: the machine was shared with other '
             'jobs, so times are upper bounds) and '
             f'{cpu_s / 60:.1f} min of CPU time (user + system, all '
             f'processes): about {cpu_s / 120:.1f} min of wall time on 2 '
             'idle cores.' + (
                 f' Results of {", ".join(reused)} were computed by an '
                 'earlier invocation of the same command (`--reuse`); their '
                 'time is included.' if reused else ''), '']
    lines += ['## The synthetic spatio-temporal benchmark', '',
              'Data (`mmxai/datasets/synthetic_benchmark.py`, difficulty '
              '`medium`): 16-frame 64x64 clips with three identical discs on '
              'a noisy textured background; one disc moves in a class-specific '
              'direction (4 classes) during a random window of 6-10 frames, '
              'the two distractors never move. The ground truth of each clip '
              '(`.npz`: the moving disc\'s pixels in its active frames) is '
              'mapped onto each model\'s input through the test pipeline\'s '
              '`frame_inds` and crop (`mmxai.evaluation.load_ground_truth`). '
              'The dataset is `mmxai.SyntheticVideoDataset`, so MMAction2\'s '
              'own `tools/train.py` / `tools/test.py` use the configs as is.',
              '', 'Models (trained from scratch with MMEngine\'s Runner by '
              '`.venv/bin/python tools/benchmarks/train_benchmark_models.py '
              '--jobs 3 --threads 1`, checkpoints in `checkpoints/benchmark/`):',
              '', '| model | config | params | checkpoint | training | '
              'test top-1 (200 clips) |', '|---|---|---:|---:|---:|---:|']
    for name in args.models:
        a = accuracy.get(name, {})
        lines.append(
            f'| {MODELS[name]["title"]} | `configs/benchmark/{name}_'
            f'synthetic.py` | {a.get("params", 0):,} | '
            f'{a.get("size_kb", 0)} KB | {a.get("epochs", "?")} epochs'
            + (f' on {a["train_clips"]} clips' if a.get('train_clips') else '')
            + f', {a.get("train_seconds", 0) / 60:.0f} min'
            + (f' (continued from {a["load_from"]}, lr {a.get("lr")})'
               if a.get('load_from') else '') + ' | '
            f'**{100 * a.get("test_top1", float("nan")):.1f} %** |')
    lines += ['', 'Fairness choices: every explained layer is a 4x4 spatial '
              'grid for a 64x64 input (I3D: spatial stride 1 in its last '
              'stage; TSM: the backbone returns MobileNetV2 stage 5, stride '
              '16; UniFormer: stage 3) with 8 time steps (I3D: stride 2 in '
              'time; TSM: 8 segments, one frame per 2; UniFormer: tubelet '
              'stride 2). All three see the same 64x64 pixels; TSM sees every '
              'second frame, the ground truth is mapped through its '
              '`frame_inds`. '
              'Grad-CAM / Grad-CAM++ use the backbone output (the head\'s '
              'input, 8x4x4) for the CNNs and, for UniFormer, whose output is '
              'a 2x2 grid at 64 px, its last stage-3 self-attention block '
              '(`backbone.blocks3.1`, 8x4x4 tokens); Saliency Tubes and CFP '
              'work on the head\'s input by definition (2x2 for UniFormer). '
              'Pure ViTs (VideoMAE-style) and a tiny Video Swin of the same '
              'size stayed at chance accuracy when trained from scratch on '
              'this motion task in the time available, so the transformer is '
              'a UniFormer (convolutional early stages, attention later). '
              'Every method explains the '
              'ground-truth class. Perturbation methods run with modest '
              'budgets (below) so that the whole benchmark fits its time '
              'limit; their scores would rise with larger budgets.', '']
    lines += ['Method settings: ' + '; '.join(
        f'`{m}` {json.dumps(s)}' for m, s in METHOD_SETTINGS.items() if s)
        + '.', '']
    lines += ['Configurations with rows of their own: ' + '; '.join(
        f'`{v}` = `{m}` with {json.dumps(extra)}'
        for v, (m, extra) in VARIANTS.items()) + ' (every frame replaced '
        'by the clip\'s mean frame: the motion removed, the appearance '
        'kept; static voxels get zero attribution).', '']
    lines += ['## Localisation and faithfulness', '',
              f'Per model, {args.clips} held-out clips (balanced over the 4 '
              'classes). Columns: **pointing** = spatio-temporal pointing game '
              '(the mean position of the map\'s global maxima lies in an '
              'evidence frame within 15 px at 224, i.e. '
              f'{fmt(next(iter(results.values()))["tolerance"], 1)} px here, '
              'of the moving disc); **pointing (cell)** = the same with a '
              'tolerance of half a cell of the 4x4 grids the CAM-type methods '
              'explain (8 px), i.e. localisation at the resolution those '
              'methods have; **energy** = share of the positive map '
              'mass inside the evidence tube; **TG** = temporal grounding (the '
              'frame with the largest map mass is an evidence frame); '
              '**t-energy** = share of the map mass in evidence frames; '
              '**deletion** / **insertion** = AUC of the target probability '
              f'when 1x{args.cell}x{args.cell} cells are faded to the mean '
              f'colour / restored, most important first ({args.steps} steps; '
              'lower deletion and higher insertion are better); **s/clip** = '
              'seconds per clip. Baselines: a uniform random map (i.i.d. per '
              'voxel; the goals compare against it), a static random map (one '
              'random frame repeated: the same ranking, without the flicker '
              'that an i.i.d. map\'s deletion creates and a motion model reads '
              'as motion) and a centre Gaussian (the same in every frame).',
              '']
    for name in args.models:
        res = results[name]
        summ = summarise(res)
        acc = accuracy.get(name, {}).get('test_top1', float('nan'))
        warn = [] if acc > 0.95 else [
            f'**Test accuracy {100 * acc:.1f} % (below the 95 % goal): '
            'these maps explain a model that has not learnt the task well, '
            'so its rows measure little.**', '']
        lines += [f'### {MODELS[name]["title"]}', ''] + warn + [
                  '| method | pointing | pointing (cell) | energy | TG | '
                  't-energy | deletion | insertion | s/clip |',
                  '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
        order = sorted((m for m in summ if m not in BASELINES),
                       key=lambda m: -summ[m]['pointing'] - summ[m]['energy'])
        for m in order + list(BASELINES):
            s = summ[m]
            lines.append(
                f'| {m} | {s["pointing"]:.2f} | {s["pointing_cell"]:.2f} | '
                f'{s["energy"]:.3f} | '
                f'{s["temporal_grounding"]:.2f} | {s["temporal_energy"]:.2f} '
                f'| {s["deletion"]:.3f} | {s["insertion"]:.3f} | '
                + ('-' if m in BASELINES else f'{s["seconds"]:.2f}') + ' |')
        for m, why in sorted(res['na'].items()):
            lines.append(f'| {m} | n/a ({why}) | | | | | | | |')
        lines.append('')
    lines += ['![maps](figures/benchmark_maps_i3d.png)', '',
              '![maps](figures/benchmark_maps_tsm.png)', '',
              '![maps](figures/benchmark_maps_transformer.png)', '',
              '![curves](figures/benchmark_deletion_insertion.png)', '']
    lines += ['## Sanity check: model parameter randomisation', '',
              'Adebayo et al.: the layers are re-initialised top-down on a '
              'copy of the model, cumulatively, from the head down to the '
              'first layer (the full cascade); the Spearman rank correlation of '
              'each clip\'s raw map with the trained model\'s map is averaged '
              f'over {args.sanity_clips} clips (target fixed to the '
              'ground-truth class). A method passes when the correlation '
              f'after the whole cascade is below {SANITY_PASS} (its maps '
              'depend on the learnt weights). Perturbation methods are left '
              'out (their cost; they query only the model\'s outputs). '
              'Cascades: ' + '; '.join(
                  f'{n}: ' + ' > '.join(f'`{c}`' for c in CASCADES[n])
                  for n in args.models) + '.', '',
              '| model | method | gradient-based | after head | after '
              'cascade | per step | passes |', '|---|---|---|---:|---:|---|---|']
    for name in args.models:
        for m, s in sanity_table(results[name]).items():
            if 'error' in s:
                lines.append(f'| {name} | {m} | {m in GRADIENT} | n/a '
                             f'({s["error"]}) | | | |')
                continue
            ok = s['top'] < SANITY_PASS
            lines.append(
                f'| {name} | {m} | {"yes" if m in GRADIENT else "no"} | '
                f'{s["head"]:.2f} | {s["top"]:.2f} | '
                f'{" ".join(f"{v:.2f}" for v in s.get("per_step", []))} | '
                f'{"yes" if ok else "**no**"} |')
    lines += ['']
    lines += goals_section(args, results, accuracy)
    if speed_md:
        lines += ['## Speed against the anchors', '', speed_md, '']
    lines += reading_section(results, accuracy)
    lines += ['## Faithfulness on your own models and data', '',
              'The deletion/insertion, localisation and sanity-check scores '
              'run on any config through MMAction2\'s own `tools/test.py` as '
              'test-time metrics (`mmxai.DeletionInsertionAUC`, '
              '`mmxai.PointingGame`, `mmxai.ModelRandomization`): inherit '
              '`configs/_base_/explain/deletion_insertion.py`, '
              '`pointing_game.py` or `sanity_check.py` beside the config, e.g. '
              '`_base_ = [\'my_config.py\', \'.../explain/sanity_check.py\']` '
              '(docs/integration.md). They are also plain '
              'functions: `mmxai.evaluation.functional.'
              'deletion_insertion_curve`, `mmxai.evaluation.localization.'
              'localization_scores`, `mmxai.evaluation.sanity.'
              'cascading_randomization` (a `model -> maps` callable and the '
              'layer names to randomise).', '']
    return '\n'.join(lines)


def goals_section(args, results, accuracy) -> List[str]:
    lines = ['## Goals', '', '| goal | result | met |', '|---|---|---|']
    for name in args.models:
        acc = accuracy.get(name, {}).get('test_top1', float('nan'))
        lines.append(f'| {name}: test accuracy > 95 % | {100 * acc:.1f} % | '
                     f'{"yes" if acc > 0.95 else "**no**"} |')
    for name in args.models:
        summ = summarise(results[name])
        methods = [m for m in summ if m not in BASELINES]
        if not methods:
            continue
        best = max(methods, key=lambda m: summ[m]['pointing'])
        bp = summ[best]['pointing']
        lines.append(f'| {name}: best pointing game >= 0.9 | {best} '
                     f'{bp:.2f} | {"yes" if bp >= 0.9 else "**no**"} |')
        worse = [m for m in methods if not _beats_random(summ, m)]
        lines.append(
            f'| {name}: every method beats the random map on pointing, '
            f'deletion and insertion | ' + (
                'all do' if not worse else 'not: ' + ', '.join(worse))
            + f' | {"yes" if not worse else "**no**"} |')
    fails = []
    for name in args.models:
        for m, s in sanity_table(results[name]).items():
            if m in GRADIENT and ('error' in s or s['top'] >= SANITY_PASS):
                fails.append(f'{name}/{m}')
    lines.append('| every gradient-based method passes the randomisation '
                 'test | ' + ('all pass' if not fails else 'fail: ' +
                              ', '.join(fails)) +
                 f' | {"yes" if not fails else "**no**"} |')
    return lines + ['']


def _beats_random(summ: Dict[str, dict], m: str) -> bool:
    rnd = summ['random map']
    return (summ[m]['pointing'] > rnd['pointing'] and
            summ[m]['deletion'] < rnd['deletion'] and
            summ[m]['insertion'] > rnd['insertion'])


def reading_section(results, accuracy=None) -> List[str]:
    """Which method when, derived from this run's numbers (models above
    95 % test accuracy only, when there are any)."""
    import numpy as np
    accuracy = accuracy or {}
    learnt = [n for n in results
              if accuracy.get(n, {}).get('test_top1', 0) > 0.95]
    summs = {n: summarise(r) for n, r in results.items()
             if n in learnt or not learnt}
    names = sorted({m for s in summs.values() for m in s} - set(BASELINES))
    mean = {}
    for m in names:
        vals = [s[m] for s in summs.values() if m in s]
        mean[m] = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        mean[m]['models'] = len(vals)
        mean[m]['beats'] = all(_beats_random(s, m) for s in summs.values()
                               if m in s)
        mean[m]['faith'] = mean[m]['insertion'] - mean[m]['deletion']

    def top(key, n=3, rev=True, pool=None):
        pool = list(pool if pool is not None else mean)
        return sorted(pool, key=lambda m: mean[m][key], reverse=rev)[:n]

    def lst(ms, key, nd=2):
        return ', '.join(f'`{m}` {mean[m][key]:.{nd}f}' for m in ms)

    good = [m for m in mean if mean[m]['beats']]
    fast = top('seconds', 1, rev=False, pool=good)
    lines = ['## Reading the results', '',
             'Averaged over the models each method applies to (' +
             ', '.join(summs) + ('; models below 95 % test accuracy are left '
                                 'out' if len(summs) < len(results) else '')
             + '):', '',
             '- Pointing (strict, 15 px at 224): ' + lst(top('pointing'),
                                                        'pointing') + '.',
             '- Pointing at the 4x4 grid\'s resolution: '
             + lst(top('pointing_cell'), 'pointing_cell') + '.',
             '- Temporal grounding (when): ' + lst(
                 top('temporal_grounding'), 'temporal_grounding') + '.',
             '- Faithfulness (insertion - deletion AUC): ' + lst(
                 top('faith'), 'faith', 3) + '.',
             '- Cost (seconds per clip): ' + lst(top('seconds', 3, False),
                                                'seconds') + '; most '
             'expensive ' + lst(top('seconds', 2), 'seconds', 1) + '.', '']
    lines += ['Which method when (from these numbers):', '']
    if fast:
        lines.append(f'- A first look: `{fast[0]}`, the cheapest method '
                     'that beats the random map on pointing, deletion and '
                     'insertion for every model ('
                     f'{mean[fast[0]]["seconds"]:.2f} s per clip).')
    when = top('temporal_grounding', 1)[0]
    cams = [m for m in ('gradcam', 'saliency_tubes', 'cfp') if m in mean]
    lines.append(f'- When the action happens: `{when}`' + (
        f' (CAM-type maps: {lst(cams, "temporal_grounding")}; they find the '
        'right frames even where their coarse grid misses the pixels).'
        if cams else '.'))
    lines.append(f'- Where, pixel-precisely: `{top("pointing", 1)[0]}`; '
                 'coarse-grid methods (CAMs, occlusion, RISE) localise only '
                 'to their cell size, which the strict pointing game on 64 px '
                 'clips punishes.')
    lines.append(f'- The most faithful ranking of evidence (deletion/insertion'
                 f'): `{top("faith", 1)[0]}`.')
    bad = sorted(m for m in mean if not mean[m]['beats'])
    tf = summs.get('transformer', {})
    cam_fail = any(m in tf and not _beats_random(tf, m) for m in CAM_TYPE)
    if bad:
        lines.append('- Not better than the random map on all of pointing, '
                     'deletion and insertion for at least one model: '
                     + ', '.join(f'`{m}`' for m in bad) + ' (see the tables '
                     'for which criterion; the perturbation methods run with '
                     'small budgets here).' + (
                         ' On the transformer the CAM-type maps fall short at '
                         'every layer tried and at a finer head grid '
                         '(`docs/transformer_cams.md`, regenerated by '
                         '`tools/benchmarks/bench_transformer_cams.py`).'
                         if cam_fail else '') + ' Check a method with '
                     'deletion/insertion on your own model before trusting '
                     'it.')
    return lines + ['']


# ----------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    os.chdir(ROOT)
    if args.worker:
        res = evaluate_model(args.worker, args)
        os.makedirs(args.work_dir, exist_ok=True)
        with open(osp.join(args.work_dir, f'{args.worker}.json'), 'w') as f:
            json.dump(res, f)
        return 0
    t0 = time.time()
    load_start = os.getloadavg()[0]
    machine = machine_line()
    from mmxai.datasets.synthetic_benchmark import generate_benchmark_dataset
    generate_benchmark_dataset(args.data_root, 'medium', splits=['test'])
    missing = [n for n in args.models if not osp.isfile(
        osp.join(args.ckpt_dir, f'{n}_synthetic.pth'))]
    if missing:
        print(f'error: no checkpoint for {", ".join(missing)} in '
              f'{args.ckpt_dir}: run tools/benchmarks/'
              'train_benchmark_models.py first', file=sys.stderr)
        return 2
    os.makedirs(args.work_dir, exist_ok=True)
    fwd = [a for a in (argv if argv is not None else sys.argv[1:])
           if a != '--reuse']
    queue = [n for n in args.models if not (args.reuse and _reusable(n, args))]
    reused = [n for n in args.models if n not in queue]
    procs = []
    speed_out = osp.join(args.work_dir, 'speed.md')
    speed_cmd = [sys.executable, osp.join(ROOT, 'tools', 'benchmarks',
                                          'bench_speed.py'),
                 '--out', speed_out, *args.speed_args.split()]
    speed_proc = None
    speed_reused = args.reuse and osp.isfile(speed_out)
    if speed_reused:
        args.skip_speed = True
    # the speed benchmark takes a job slot as soon as one is free
    while queue or any(p.poll() is None for p in procs) or (
            not args.skip_speed and speed_proc is None):
        running = sum(p.poll() is None for p in procs) + int(
            speed_proc is not None and speed_proc.poll() is None)
        if queue and running < args.jobs:
            name = queue.pop(0)
            cmd = [sys.executable, osp.abspath(__file__), *fwd,
                   '--worker', name]
            procs.append(subprocess.Popen(cmd))
            continue
        if not args.skip_speed and speed_proc is None and \
                running < args.jobs:
            if osp.isfile(speed_out):
                os.remove(speed_out)
            speed_proc = subprocess.Popen(speed_cmd)
            continue
        time.sleep(1)
    if speed_proc is not None:
        speed_proc.wait()
    if any(p.returncode for p in procs):
        print('error: a model evaluation failed', file=sys.stderr)
        return 1
    speed_md = ''
    if (speed_reused or speed_proc is not None and speed_proc.returncode
            == 0) and osp.isfile(speed_out):
        with open(speed_out) as f:
            speed_md = f.read()
    results = {}
    for name in args.models:
        with open(osp.join(args.work_dir, f'{name}.json')) as f:
            results[name] = json.load(f)
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = ru.ru_utime + ru.ru_stime + sum(
        results[n].get('cpu_seconds', 0) for n in reused)
    acc_path = osp.join(args.ckpt_dir, 'accuracy.json')
    accuracy = json.load(open(acc_path)) if osp.isfile(acc_path) else {}
    figs = save_figures(results, args.fig_dir)
    elapsed = time.time() - t0
    elapsed += sum(results[n]['seconds'] for n in reused)
    report = write_report(args, results, accuracy, speed_md, figs, elapsed,
                          machine, load_start, os.getloadavg()[0], cpu_s,
                          reused)
    os.makedirs(osp.dirname(args.out) or '.', exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(report + '\n')
    print(report)
    print(f'[run_benchmarks] wrote {args.out} and {len(figs)} figures in '
          f'{elapsed / 60:.1f} min', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
