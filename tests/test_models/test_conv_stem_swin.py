"""``ConvStemSwinTransformer3D``: MMAction2's Video Swin with a conv stem.
It builds by name, gives the linear patchify's token grid, keeps Swin's
state-dict keys outside the stem, and mmxai's windowed attention rollout /
relevance apply to it: maps against dense operator products built
independently (the helpers of ``test_attention_swin``), mass conserved."""
import pytest
import torch
import torch.nn.functional as F

import mmxai  # noqa: F401
from mmxai.errors import ConfigError
from mmxai.explainers import build_explainer
from mmxai.models import ConvStemSwinTransformer3D
from mmxai.models.conv_stem_swin import swin_conv_stem
from mmxai.testing.coverage import ModelSnapshot
from tests.test_explainers.test_attention_swin import dense_ops, record
from tests.tiny_models import PREPROCESSOR_3D, build

EMBED = 8


def cfg(stem: bool = True) -> dict:
    backbone = dict(type='ConvStemSwinTransformer3D' if stem else
                    'SwinTransformer3D', pretrained=None,
                    pretrained2d=False,
                    arch=dict(embed_dims=EMBED, depths=[2, 2],
                              num_heads=[1, 2]),
                    patch_size=(2, 8, 8), window_size=(2, 2, 2),
                    drop_path_rate=0.0, out_indices=(1,))
    if stem:
        backbone['stem_channels'] = (4, 6)
    return dict(
        type='Recognizer3D', backbone=backbone,
        cls_head=dict(type='I3DHead', num_classes=3, in_channels=2 * EMBED,
                      spatial_type='avg', dropout_ratio=0.0,
                      average_clips='prob'),
        data_preprocessor=PREPROCESSOR_3D)


def clip(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 1, 3, 8, 32, 32, generator=g)


def test_builds_with_the_patch_grid_and_swin_keys():
    model = build(cfg())
    bb = model.backbone
    assert isinstance(bb, ConvStemSwinTransformer3D)
    assert type(bb).__name__ == 'SwinTransformer3D'  # mmxai's family name
    x = torch.randn(2, 3, 8, 32, 32)
    with torch.no_grad():
        tok = bb.patch_embed(x)
        out = bb(x)
    assert tok.shape == (2, EMBED, 4, 4, 4)  # 8/2, 32/8, 32/8
    assert out.shape == (2, 2 * EMBED, 4, 2, 2)  # after one merge
    lin = torch.nn.Conv3d(3, EMBED, (2, 8, 8), (2, 8, 8))
    assert lin(x).shape == tok.shape
    stem = bb.patch_embed.proj
    assert stem.kernel_size == stem.stride == lin.kernel_size
    assert stem.padding == lin.padding
    # above the stem the keys are the plain Swin's
    plain = build(cfg(stem=False)).backbone.state_dict()
    ours = bb.state_dict()
    strip = {k for k in ours if not k.startswith('patch_embed.proj.')}
    assert strip == {k for k in plain
                     if not k.startswith('patch_embed.proj.')}
    # stem conv1 (3x5x5), conv2 (3x3x3), projection (1x2x2)
    shapes = [tuple(m.weight.shape) for m in stem
              if isinstance(m, torch.nn.Conv3d)]
    assert shapes == [(4, 3, 3, 5, 5), (6, 4, 3, 3, 3), (EMBED, 6, 1, 2, 2)]


def test_stem_pads_like_the_patchify():
    """Sizes not divisible by the patch: PatchEmbed3D pads first, so the
    grid is the ceiling as for the linear projection."""
    bb = build(cfg()).backbone
    with torch.no_grad():
        tok = bb.patch_embed(torch.randn(1, 3, 7, 36, 30))
    assert tok.shape == (1, EMBED, 4, 5, 4)


def test_bad_patch_sizes_raise():
    with pytest.raises(ConfigError, match='divisible by 4'):
        swin_conv_stem(3, 8, (2, 6, 6))
    with pytest.raises(ConfigError, match='3-sequence'):
        ConvStemSwinTransformer3D(arch=dict(embed_dims=8, depths=[2],
                                            num_heads=[1]),
                                  patch_size=4, pretrained2d=False,
                                  out_indices=(0,))


def test_rollout_and_relevance_on_the_conv_stem_swin():
    """Both methods on the windowed operators above the stem: equal to the
    dense products of the recorded windows and merge (built in the test),
    rollout's token map sums to 1, maps on the input ``[1, 1, 8, 32, 32]``,
    model left as found."""
    model, x = build(cfg()), clip()
    snap = ModelSnapshot(model)
    calls, grads = record(model, x, target=1)
    assert [c.kind for c in calls] == ['window'] * 2 + ['merge'] + \
        ['window'] * 2
    assert calls[1].meta['shift'] == (1, 1, 1)
    ops = dense_ops(calls, [None if c.probs is None else
                            c.probs.detach().mean(1) for c in calls])
    c = None
    for kind, o in ops:
        if kind == 'window':
            o = o + torch.eye(o.shape[0])
            o = o / o.sum(-1, keepdim=True)
        c = o if c is None else o @ c
    exp = build_explainer('attention_rollout', model).attribute(x, target=1)
    tok = exp.extras['token_map']
    assert tok.shape == (1, 1, 4, 4, 4)
    torch.testing.assert_close(tok.reshape(-1), c.mean(0), rtol=1e-4,
                               atol=1e-7)
    torch.testing.assert_close(tok.sum(), torch.tensor(1.0), rtol=1e-4,
                               atol=0)
    assert exp.maps.shape == (1, 1, 8, 32, 32)

    ops = dense_ops(calls, [None if c.probs is None else
                            F.relu(g * c.probs.detach()).mean(1)
                            for c, g in zip(calls, grads)])
    r, ident = torch.eye(64), torch.eye(64)
    for kind, o in ops:
        if kind == 'window':
            r = r + o @ r
        else:
            r, ident = o @ r, o @ ident
    expected = (r - ident).mean(0)
    exp = build_explainer('attention_relevance', model).attribute(x,
                                                                  target=1)
    torch.testing.assert_close(exp.extras['token_map'].reshape(-1), expected,
                               rtol=1e-4, atol=1e-8)
    assert expected.abs().max() > 0
    assert exp.maps.shape == (1, 1, 8, 32, 32)
    assert not snap.changes()
