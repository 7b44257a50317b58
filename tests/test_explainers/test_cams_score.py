"""Score-CAM, SS-CAM, IS-CAM against torch-cam on the tiny I3D (Conv3d).

torch-cam's ``ScoreCAM``/``SSCAM``/``ISCAM`` mask ``[N, C, T, H, W]``
inputs with each channel of a Conv3d layer min-max normalised (per
channel, ``eps=1e-8``) and upsampled trilinearly to ``(T, H, W)``; their
raw maps (``normalized=False``) are compared with mmxai's raw layer maps
upsampled the same way: ``max|a - b| <= 1e-4 max|b|``. SS-CAM's noise is
compared with one noisy sample drawn from the same seed (torch-cam: the
global RNG after ``torch.manual_seed``; mmxai: its own seeded generator).
"""
import pytest
import torch

from mmxai.adapters.base import upsample_maps
from mmxai.errors import MMXAIError
from mmxai.explainers import ISCAM, SSCAM, ScoreCAM, build_explainer
from mmxai.testing.coverage import ModelSnapshot
from cams_reference import close, torchcam, torchcam_maps
from tiny_models import build, clip_batch, i3d_cfg, preprocess, tsn_cfg

INNER, HEAD_INPUT = 'backbone.layer3', 'backbone'
TARGETS = torch.tensor([1, 3])


@pytest.fixture(scope='module')
def i3d():
    return build(i3d_cfg())


@pytest.fixture(scope='module')
def inputs(i3d):
    return preprocess(i3d, clip_batch(batch=2, frames=4, size=16))['inputs']


def upsampled(cam, inputs):
    return upsample_maps(cam.unsqueeze(1), inputs.shape[-3:])


@pytest.mark.parametrize('ours,theirs,kwargs,seed', [
    (ScoreCAM, 'ScoreCAM', {}, None),
    (SSCAM, 'SSCAM', dict(num_samples=1, std=0.5), 3),
    (SSCAM, 'SSCAM', dict(num_samples=2, std=1e-20), None),
    (ISCAM, 'ISCAM', dict(num_samples=2), None)])
def test_equals_torchcam(i3d, inputs, ours, theirs, kwargs, seed):
    layer = HEAD_INPUT if ours is ScoreCAM else INNER
    ref, _ = torchcam_maps(getattr(torchcam, theirs), i3d, inputs, TARGETS,
                           [layer], forward_grad=False, seed=seed,
                           batch_size=7, **kwargs)
    mine = dict(kwargs, seed=seed) if seed is not None else kwargs
    snap = ModelSnapshot(i3d)
    exp = ours(i3d, target_layers=[layer], batch_size=5, **mine).attribute(
        inputs, TARGETS)
    assert not snap.changes()
    close(exp.layer_maps[layer], upsampled(ref[layer], inputs))


def test_batches_views_top_k(i3d, inputs):
    one = SSCAM(i3d, [INNER], num_samples=2, std=0.3, top_k=6,
                batch_size=64).attribute(inputs, TARGETS)
    small = SSCAM(i3d, [INNER], num_samples=2, std=0.3, top_k=6,
                  batch_size=5).attribute(inputs, TARGETS)
    close(small.raw_maps, one.raw_maps, 1e-5)
    # two views: chunks of one view equal one pass, noise included
    two = preprocess(i3d, clip_batch(views=2, frames=4, size=16))['inputs']
    full = SSCAM(i3d, [INNER], num_samples=2, std=0.3, top_k=4,
                 max_views_per_pass=None).attribute(two, 2)
    chunked = SSCAM(i3d, [INNER], num_samples=2, std=0.3, top_k=4,
                    max_views_per_pass=1).attribute(two, 2)
    close(chunked.raw_maps, full.raw_maps, 1e-5)
    # top_k = all channels is Score-CAM; fewer is cheaper and finite
    k = ScoreCAM(i3d, [INNER], top_k=16).attribute(inputs, TARGETS)
    close(k.raw_maps, ScoreCAM(i3d, [INNER]).attribute(
        inputs, TARGETS).raw_maps, 1e-5)
    few = ScoreCAM(i3d, top_k=3).attribute(inputs, TARGETS)
    assert torch.isfinite(few.raw_maps).all()
    assert few.settings['top_k'] == 3
    with pytest.raises(MMXAIError, match='top_k'):
        ScoreCAM(i3d, top_k=0)
    assert build_explainer('scorecam', i3d).name == 'scorecam'
    assert build_explainer('sscam', i3d).name == 'sscam'


def test_2d_family():
    tsn = build(tsn_cfg())
    x = preprocess(tsn, clip_batch(frames=3, size=16, two_d=True))['inputs']
    snap = ModelSnapshot(tsn)
    exp = ScoreCAM(tsn, top_k=8).attribute(x)
    assert exp.maps.shape == (1, 1, 3, 16, 16)
    assert torch.isfinite(exp.raw_maps).all()
    assert not snap.changes()
