"""Benchmark settings: models, methods and their budgets, layers, arguments."""
import argparse
import glob
import json
import os.path as osp
import re
from typing import List, Optional

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))))

#: The models of the default run (``--models`` takes any other NAME with a
#: ``configs/benchmark/NAME_synthetic.py`` + ``<ckpt-dir>/NAME_synthetic.pth``
#: pair, see :func:`benchmark_models`; its display name is the config's
#: ``benchmark_title``).
MODELS = {
    'i3d': dict(title='I3D (tiny ResNet3d-18)'),
    'tsm': dict(title='TSM (MobileNetV2-0.5)'),
    'transformer': dict(title='UniFormer (tiny video transformer)'),
}
CONFIG_DIR = osp.join(ROOT, 'configs', 'benchmark')


def benchmark_models() -> List[str]:
    """Every benchmark model: the names ``NAME`` of
    ``configs/benchmark/NAME_synthetic.py`` (the default models first)."""
    found = sorted(osp.basename(p)[:-len('_synthetic.py')] for p in
                   glob.glob(osp.join(CONFIG_DIR, '*_synthetic.py')))
    return list(MODELS) + [n for n in found if n not in MODELS]


def model_config(name: str) -> str:
    return osp.join(CONFIG_DIR, f'{name}_synthetic.py')


def model_title(name: str) -> str:
    """Display name of benchmark model ``name``: :data:`MODELS`' title,
    else the config's ``benchmark_title = '...'`` line, else ``name``."""
    if name in MODELS:
        return MODELS[name]['title']
    try:
        with open(model_config(name)) as f:
            m = re.search(r'''^benchmark_title\s*=\s*(['"])(.+?)\1''',
                          f.read(), re.M)
    except OSError:
        m = None
    return m.group(2) if m else name

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
    # issue 17/18 methods. Budgets: the authors' where affordable, else
    # stated here and in docs/benchmarks.md (removal-based methods: the
    # lime / kernel_shap segment count; frame Shapley: 8 exact players).
    'loco': dict(n_segments=48, batch_size=32),
    'univariate': dict(n_segments=48, batch_size=32),
    'frame_shapley': dict(segments=8, batch_size=32),  # 2^8 exact
    'temporal_mask': dict(iterations=30, batch_size=4),
    'aosa': dict(mode='exact', window=(16, 16, 16), stride=(16, 8, 8),
                 batch_size=32),
    'swag_v': {},
    'lrp': {},
    'legrad': {},
    'staa': {},
    'fem': {},
    'finer_cam': {},
}
#: The methods registered by issue 17/18 (``--methods new``).
NEW_METHODS = ('loco', 'univariate', 'frame_shapley', 'temporal_mask',
               'aosa', 'swag_v', 'lrp', 'legrad', 'staa', 'fem',
               'finer_cam')
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
PERTURBATION = {'occlusion', 'rise', 'step', 'lime', 'kernel_shap',
                'loco', 'univariate', 'frame_shapley', 'temporal_mask',
                'aosa'}
GRADIENT = {'gradcam', 'gradcam++', 'saliency', 'integrated_gradients',
            'integrated_gradients[temporal_mean]',
            'smoothgrad', 'attention_relevance', 'swag_v', 'lrp', 'legrad',
            'finer_cam'}

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


def cascade_for(name: str, model) -> List[str]:
    """Randomisation cascade of benchmark model ``name``: :data:`CASCADES`
    where listed, else derived from the recognizer: ``cls_head``, then the
    backbone's parameterised children from the output down (a ``ModuleList``
    or ``Sequential`` of blocks, stages or layers expanded into its
    elements, last first), e.g. ``fc_norm > blocks.3 > ... > blocks.0 >
    patch_embed`` for a VideoMAE ViT."""
    if name in CASCADES:
        return list(CASCADES[name])
    from torch import nn

    def has_params(m):
        return any(True for _ in m.parameters())

    out = ['cls_head'] if has_params(getattr(model, 'cls_head', nn.Module())
                                     ) else []
    for child, mod in reversed(list(model.backbone.named_children())):
        if not has_params(mod):
            continue
        if isinstance(mod, (nn.ModuleList, nn.Sequential)) and len(mod) > 1:
            out += [f'backbone.{child}.{i}'
                    for i in reversed(range(len(mod))) if has_params(mod[i])]
        else:
            out.append(f'backbone.{child}')
    return out
CAM_METHODS = {'gradcam', 'gradcam++', 'fem', 'finer_cam'}
#: Every CAM-type method (the last two read the head's input by definition).
CAM_TYPE = ('gradcam', 'gradcam++', 'saliency_tubes', 'cfp')
BASELINES = ('random map', 'static random map', 'centre map')
SANITY_PASS = 0.5  # mean Spearman below this after randomisation: passes

#: Generator seed of the shipped held-out split (``BENCHMARK_SPLITS``).
SHIPPED_SEED = 102

DESCRIPTION = ('Regenerate docs/benchmarks.md: localisation, faithfulness, '
               'sanity and speed of every mmxai method on the synthetic '
               'benchmark recognizers.')


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=DESCRIPTION)
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=benchmark_models(),
                   help='default: %(default)s; any NAME with a configs/'
                   'benchmark/NAME_synthetic.py and a checkpoint '
                   '<ckpt-dir>/NAME_synthetic.pth')
    p.add_argument('--methods', nargs='+', default=None,
                   help='default: every registered method; `new`: the '
                   'issue 17/18 methods (NEW_METHODS)')
    p.add_argument('--data-seed', type=int, default=None,
                   help='generator seed of the held-out clips (default: '
                   'the shipped test split, seed %d); another seed writes '
                   'fresh clips to <data-root>_seed<N> and results to '
                   '<work-dir>/seed<N>' % SHIPPED_SEED)
    p.add_argument('--partial', action='store_true',
                   help='only the --methods rows: write the model tables '
                   'and goals of these methods (plus the baselines) to '
                   '--out (default <work-dir>/partial.md) and the figures '
                   'as benchmark_partial[_seed<N>]_*.png; no speed run')
    p.add_argument('--skip-sanity', action='store_true',
                   help='leave out the parameter randomisation test')
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
    args = p.parse_args(argv)
    if args.methods == ['new']:
        args.methods = list(NEW_METHODS)
    seed = args.data_seed
    if seed is not None and seed != SHIPPED_SEED:
        args.data_root = f'{args.data_root}_seed{seed}'
        args.work_dir = osp.join(args.work_dir, f'seed{seed}')
    if args.partial:
        args.skip_speed = True
        tag = 'partial' + (f'_seed{seed}' if seed not in (None, SHIPPED_SEED)
                           else '')
        if args.out == 'docs/benchmarks.md':
            args.out = osp.join(args.work_dir, f'{tag}.md')
        args.fig_prefix = f'benchmark_{tag}'
    else:
        args.fig_prefix = 'benchmark'
    return args


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


def run_settings(args: argparse.Namespace) -> dict:
    """What a model's results depend on besides its checkpoint
    (``--reuse`` compares it)."""
    return dict(clips=args.clips, steps=args.steps, cell=args.cell,
                sanity_clips=args.sanity_clips, methods=args.methods,
                data_seed=args.data_seed, skip_sanity=args.skip_sanity,
                method_settings=json.loads(json.dumps(METHOD_SETTINGS)),
                variants=json.loads(json.dumps(VARIANTS)))
