"""mmxai's ConvStemVisionTransformer (the benchmark's conv-stem VideoMAE
ViT): registry, token grid and state-dict keys against MMAction2's own
VisionTransformer, the stem's receptive field worked by hand, mmxai's token
adapter and attention rollout (against a dense product built here), and the
shipped benchmark checkpoint."""
import copy
import os.path as osp
import sys

import pytest
import torch

import tiny_models  # noqa: F401  (mmxai, the toolbox's default scope)
from mmaction.models.backbones.vit_mae import VisionTransformer
from mmaction.registry import MODELS
from mmxai.adapters import build_adapter
from mmxai.adapters.transformer import VideoMAEAdapter
from mmxai.errors import ConfigError
from mmxai.explainers import build_explainer
from mmxai.explainers.attention import record_attention
from mmxai.models import ConvStemVisionTransformer, conv_stem
from mmxai.testing.coverage import ModelSnapshot

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
T, S, P, TUB = 8, 32, 8, 2  # 8 frames of 32 px, 8 px patches: 4x4x4 tokens
BACKBONE = dict(img_size=S, patch_size=P, embed_dims=16, depth=2,
                num_heads=2, num_frames=T, tubelet_size=TUB,
                norm_cfg=dict(type='LN', eps=1e-6), use_mean_pooling=True)


def recognizer(kind='ConvStemVisionTransformer', seed=0):
    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='Recognizer3D', backbone=dict(type=kind, **BACKBONE),
        cls_head=dict(type='TimeSformerHead', num_classes=3, in_channels=16),
        data_preprocessor=dict(type='ActionDataPreprocessor',
                               mean=[127.5] * 3, std=[58.0] * 3,
                               format_shape='NCTHW')))
    model.init_weights()
    return model.eval()


def test_registered_under_its_own_name_without_shadowing():
    assert MODELS.get('ConvStemVisionTransformer') is \
        ConvStemVisionTransformer
    assert MODELS.get('VisionTransformer') is VisionTransformer
    assert issubclass(ConvStemVisionTransformer, VisionTransformer)
    # the family name mmxai's adapters and attention methods read
    assert ConvStemVisionTransformer.__name__ == 'VisionTransformer'


def test_token_grid_and_state_dict_keys_are_the_videomae_vits():
    conv, lin = recognizer(), recognizer('VisionTransformer')
    x = torch.randn(2, 3, T, S, S)
    with torch.no_grad():
        ours = conv.backbone.patch_embed.projection(x)
        theirs = lin.backbone.patch_embed.projection(x)
        tokens = conv.backbone.patch_embed(x)[0]
    assert ours.shape == theirs.shape == (2, 16, T // TUB, S // P, S // P)
    assert tokens.shape == (2, (T // TUB) * (S // P) ** 2, 16)
    assert tokens.shape[1:] == conv.backbone.pos_embed.shape[1:]
    stem = 'backbone.patch_embed.projection.'
    sd_c, sd_l = conv.state_dict(), lin.state_dict()
    rest_c = {k: v.shape for k, v in sd_c.items() if not k.startswith(stem)}
    rest_l = {k: v.shape for k, v in sd_l.items() if not k.startswith(stem)}
    assert rest_c == rest_l
    assert sorted(k[len(stem):] for k in sd_c if k.startswith(stem)) == [
        '0.bias', '0.weight', '2.bias', '2.weight', '4.bias', '4.weight']
    # the VideoMAE ViT's weights above the stem load as they are
    missing, unexpected = conv.load_state_dict(
        {k: v for k, v in sd_l.items() if not k.startswith(stem)},
        strict=False)
    assert not unexpected and all(k.startswith(stem) for k in missing)
    with torch.no_grad():
        a = conv.backbone.blocks[0](tokens)
        b = lin.backbone.blocks[0](tokens)
    torch.testing.assert_close(a, b)


def test_stem_receptive_field_by_hand():
    """Token (t, i, j) sees frames [s t - 2, s t + 2] and rows / columns
    [i p - 4, (i + 1) p] (clipped): worked from the three kernels, strides
    and paddings; every ReLU held open by a large bias, so the gradient's
    support is the whole receptive field."""
    stem = copy.deepcopy(recognizer().backbone.patch_embed.projection)
    with torch.no_grad():
        for m in stem:
            if isinstance(m, torch.nn.Conv3d) and m is not stem[-1]:
                m.bias.fill_(1e3)
    x = torch.randn(1, 3, T, S, S, requires_grad=True)
    for t, i, j in ((0, 0, 0), (1, 2, 1), (3, 3, 3)):
        out = stem(x)
        grad, = torch.autograd.grad(out[0, 0, t, i, j], x)
        nz = grad[0].abs().sum(0).nonzero()
        lo, hi = nz.min(0).values.tolist(), nz.max(0).values.tolist()
        assert lo == [max(0, TUB * t - 2), max(0, P * i - 4),
                      max(0, P * j - 4)]
        assert hi == [min(T - 1, TUB * t + 2), min(S - 1, P * (i + 1)),
                      min(S - 1, P * (j + 1))]


def test_conv_stem_refuses_a_patch_size_it_cannot_tile():
    with pytest.raises(ConfigError, match='multiple of 4'):
        conv_stem(16, 2, 6)


def test_adapter_and_attention_rollout_on_a_tiny_instance():
    model = recognizer()
    adapter = build_adapter(model)
    assert isinstance(adapter, VideoMAEAdapter)
    x = torch.randn(1, 1, 3, T, S, S) * 40
    assert adapter.token_grid(x) == (T // TUB, S // P, S // P)
    snap = ModelSnapshot(model)
    exp = build_explainer('attention_rollout', model).attribute(x, target=1)
    assert snap.changes() == []
    assert exp.maps.shape == (1, 1, T, S, S)
    # rollout by hand: C = prod_b rownorm(mean_heads A_b + I), map = the
    # mean over C's rows (VideoMAE mean-pools its tokens)
    with record_attention(model.backbone) as calls, torch.no_grad():
        adapter.scores(x)
        probs = [c.probs for c in calls]
    n = probs[0].shape[-1]
    c = torch.eye(n)
    for p in probs:
        a = p[0].mean(0) + torch.eye(n)
        c = (a / a.sum(-1, keepdim=True)) @ c
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1),
                               c.mean(0), rtol=1e-4, atol=1e-6)
    gc = build_explainer('gradcam', model).attribute(x, target=1)
    assert gc.maps.shape == (1, 1, T, S, S) and torch.isfinite(gc.maps).all()


CFG = osp.join(ROOT, 'configs', 'benchmark', 'vit_conv_synthetic.py')
CKPT = osp.join(ROOT, 'checkpoints', 'benchmark', 'vit_conv_synthetic.pth')


@pytest.mark.skipif(not osp.isfile(CKPT), reason='no benchmark checkpoint')
def test_shipped_benchmark_checkpoint_loads_and_the_suite_finds_it():
    from mmxai.apis import init_recognizer
    model = init_recognizer(CFG, CKPT)  # mmxai's safe loader, strict
    assert getattr(model, 'mmxai_checkpoint_warning', None) is None
    ckpt = torch.load(CKPT, map_location='cpu', weights_only=True)
    assert {'meta', 'state_dict'} <= set(ckpt)
    assert ckpt['meta']['dataset_meta']['classes'][0] == 'left_to_right'
    assert isinstance(build_adapter(model), VideoMAEAdapter)
    sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))
    from suite.settings import cascade_for, model_title, parse_args
    args = parse_args(['--models', 'vit_conv', '--partial'])
    assert args.models == ['vit_conv']
    assert model_title('vit_conv') == 'ViT (conv stem, VideoMAE layout)'
    assert cascade_for('vit_conv', model) == [
        'cls_head', 'backbone.fc_norm', 'backbone.blocks.3',
        'backbone.blocks.2', 'backbone.blocks.1', 'backbone.blocks.0',
        'backbone.patch_embed']


def test_suite_skips_repeating_aliases_and_reports_a_skipped_sanity_test():
    sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))
    from suite.evaluation import distinct_methods
    from suite.report import goals_section
    from suite.settings import parse_args
    names = distinct_methods(['legrad', 'le_grad', 'loco', 'supervoxel_loco',
                              'gradcam'], 'vit_conv')
    # le_grad repeats legrad; supervoxel_loco is loco at another budget
    assert names == ['legrad', 'loco', 'supervoxel_loco', 'gradcam']
    row = dict(method='gradcam', pointing=1.0, deletion=0.1, insertion=0.9)
    rnd = dict(method='random map', pointing=0.0, deletion=0.5,
               insertion=0.5)
    keys = ('pointing_cell', 'energy', 'temporal_grounding',
            'temporal_energy', 'seconds')
    res = dict(rows=[dict(dict.fromkeys(keys, 0.5), **r) for r in (row, rnd)],
               sanity={})
    text = '\n'.join(goals_section(
        parse_args(['--models', 'vit_conv', '--skip-sanity']),
        {'vit_conv': res}, {'vit_conv': dict(test_top1=1.0)}))
    assert 'randomisation test | not run' in text and 'all pass' not in text
