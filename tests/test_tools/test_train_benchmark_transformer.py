"""Building blocks of tools/benchmarks/train_benchmark_transformer.py."""
import math
import os.path as osp
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'benchmarks'))
import train_benchmark_transformer as tbt  # noqa: E402


def tiny_args(**kw):
    argv = ['--embed', '32', '--depth', '2', '--heads', '2']
    for k, v in kw.items():
        argv += [f'--{k}', str(v)]
    return tbt.parse_args(argv)


@pytest.mark.parametrize('stem', ['patch', 'conv'])
def test_token_grid_matches_the_model_forward(stem):
    """token_grid's logits are the Recognizer's own (backbone + head), and
    its last grid mean-pools to the backbone's pooled input of fc_norm."""
    torch.manual_seed(0)
    args = tiny_args(stem=stem)
    model = tbt.build_student(tbt.student_model_cfg(args)).eval()
    assert type(model.backbone).__name__ == 'VisionTransformer'
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        logits, grids = tbt.token_grid(model, x)
        ref = model.cls_head(model.backbone(x))
        pooled = model.backbone.fc_norm(grids[-1].flatten(2).mean(2))
    assert torch.allclose(logits, ref, atol=1e-5)
    assert torch.allclose(pooled, model.backbone(x), atol=1e-5)
    assert len(grids) == 2
    assert all(g.shape == (2, 32, 8, 4, 4) for g in grids)  # t/2, 64/16


@pytest.mark.parametrize('stem', ['patch', 'conv'])
def test_swin_token_grid_matches_the_model_forward(stem):
    """Swin: the logits are the Recognizer's own, one grid per stage
    (before its patch merging; the last the backbone's normed output);
    the conv stem (mmxai.models.conv_stem_swin) gives 8x8x8 tokens."""
    torch.manual_seed(0)
    args = tiny_args(arch='swin', stem=stem)
    model = tbt.build_student(tbt.student_model_cfg(args)).eval()
    assert type(model.backbone).__name__ == 'SwinTransformer3D'
    x = torch.randn(2, 3, 16, 64, 64)
    with torch.no_grad():
        logits, grids = tbt.token_grid(model, x)
        feat = model.backbone(x)
        ref = model.cls_head(feat)
    assert torch.allclose(logits, ref, atol=1e-5)
    assert torch.equal(grids[-1], feat)
    side = 8 if stem == 'conv' else 16  # 64 / patch (8 conv, 4 linear)
    assert [tuple(g.shape) for g in grids] == [
        (2, 32, 8, side, side), (2, 64, 8, side // 2, side // 2)]
    # --depth 2: one block per stage
    assert [len(layer.blocks) for layer in model.backbone.layers] == [1, 1]
    window = tuple(model.backbone.layers[0].blocks[0].window_size)
    assert window == ((4, 4, 4) if stem == 'conv' else (8, 4, 4))


def test_conv_stem_students_are_the_mmxai_models():
    """--stem conv builds mmxai's registered conv-stem classes, whose stem
    keeps the linear patchify's grid arithmetic (read by the adapters)."""
    from mmxai.models.conv_stem_swin import ConvStemSwinTransformer3D
    from mmxai.models.conv_stem_vit import ConvStemVisionTransformer
    x = torch.randn(1, 3, 16, 64, 64)
    for arch, cls, proj, grid in (
            ('vit', ConvStemVisionTransformer, 'projection', (8, 4, 4)),
            ('swin', ConvStemSwinTransformer3D, 'proj', (8, 8, 8))):
        bb = tbt.build_student(tbt.student_model_cfg(
            tiny_args(arch=arch, stem='conv'))).backbone
        assert isinstance(bb, cls)
        stem = getattr(bb.patch_embed, proj)
        assert isinstance(stem, torch.nn.Sequential)
        with torch.no_grad():
            out = stem(x)
        lin = torch.nn.Conv3d(3, 32, stem.kernel_size, stem.stride)
        assert out.shape == lin(x).shape == (1, 32, *grid)
        assert stem.padding == (0, 0, 0)


def test_distill_loss_terms():
    """KL = 0 for identical logits; the feature term = 0 when the adapter
    maps the student grid onto the teacher's exactly; weights combine as
    the docstring's formula."""
    torch.manual_seed(0)
    args = tiny_args(alpha=0.3, tau=2.0, beta=2.0)
    s = torch.randn(4, 4)
    y = torch.tensor([0, 1, 2, 3])
    z = torch.randn(4, 8, 8, 4, 4)
    adapter = torch.nn.Conv3d(8, 8, 1, bias=False)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(8).view(8, 8, 1, 1, 1))
    out = tbt.distill_loss(s, y, s.clone(), [z], [z.clone()], [adapter],
                           args)
    assert abs(float(out['kd'])) < 1e-6
    assert float(out['feat']) < 1e-10
    ce = F.cross_entropy(s, y)
    assert torch.allclose(out['loss'], 0.7 * ce, atol=1e-6)
    # a finer student grid is pooled onto the teacher's coarser one
    f = torch.randn(4, 8, 8, 2, 2)
    out2 = tbt.distill_loss(s, y, s + 1.0, [z], [f], [adapter], args)
    pz = F.layer_norm(F.adaptive_avg_pool3d(z, (8, 2, 2)).movedim(1, -1),
                      (8,))
    tf = F.layer_norm(f.movedim(1, -1), (8,))
    assert torch.allclose(out2['feat'], ((pz - tf) ** 2).mean(), atol=1e-6)
    assert abs(float(out2['kd'])) < 1e-6  # a constant shift: same softmax


def test_lr_schedule():
    base, total, warm = 1e-3, 100, 10
    assert math.isclose(tbt.lr_at(0, total, warm, base), 1e-4)
    assert math.isclose(tbt.lr_at(warm, total, warm, base), base)
    assert math.isclose(tbt.lr_at(total, total, warm, base), 0.01 * base)
    lrs = [tbt.lr_at(k, total, warm, base) for k in range(warm, total)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_draw_clips_balanced_and_deterministic():
    x, y = tbt.draw_clips(8, 3, 'easy')
    x2, y2 = tbt.draw_clips(8, 3, 'easy')
    assert x.shape == (8, 16, 64, 64, 3) and x.dtype == np.uint8
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert sorted(np.bincount(y, minlength=4)) == [2, 2, 2, 2]
    v = tbt.normalise(x[:1])
    assert v.shape == (1, 3, 16, 64, 64)
    assert torch.allclose(v[0, :, 0, 0, 0],
                          (torch.tensor(x[0, 0, 0, 0]).float() - 127.5) / 58)


def test_curriculum_rises_to_the_final_difficulty():
    args = tiny_args(curriculum=3)
    assert [tbt.epoch_difficulty(e, args) for e in range(5)] == \
        [0.0, 0.25, 0.5, 0.5, 0.5]
    assert tbt.epoch_difficulty(4, tiny_args()) == 'medium'
