"""torch-cam (test-only dependency) on mmxai's tiny recognizers.

torch-cam's extractors hook a plain ``nn.Module`` that maps ``[N, C, T, H,
W]`` to ``[N, K]`` scores; :class:`ScoreModule` is the recognizer with one
view, scored as mmxai (and ``predict``) score it: the pre-softmax score of
``extract_feat(test_mode=True)`` and the head. Layer names gain ``net.``.
"""
import pytest
import torch
from torch import nn

from mmxai.adapters import build_adapter

torchcam = pytest.importorskip('torchcam.methods')


class ScoreModule(nn.Module):
    """``x [N, C, T, H, W] -> scores [N, K]`` of ``recognizer`` (V=1)."""

    def __init__(self, recognizer: nn.Module):
        super().__init__()
        self.net = recognizer
        self.adapter = build_adapter(recognizer)

    def forward(self, x):
        return self.adapter.scores(x.unsqueeze(1))


def torchcam_maps(extractor_cls, recognizer, inputs, targets, layers,
                  forward_grad=True, seed=None, **kwargs):
    """torch-cam's raw maps (``normalized=False``) ``{layer: [N, t, h, w]}``
    for ``inputs [N, 1, C, T, H, W]`` and per-sample ``targets``."""
    module = ScoreModule(recognizer).eval()
    names = ['net.' + n for n in layers]
    x = inputs[:, 0].detach().clone()
    with extractor_cls(module, names, input_shape=tuple(x.shape[1:]),
                       **kwargs) as cam:
        with torch.set_grad_enabled(forward_grad):
            scores = module(x)
        if seed is not None:  # torch-cam draws noise from the global RNG
            torch.manual_seed(seed)
        maps = cam([int(t) for t in targets], scores, normalized=False)
        fused = cam.fuse_cams if len(names) > 1 else None
    return dict(zip(layers, [m.detach() for m in maps])), fused


def close(a, b, rtol=1e-4):
    """``|a - b| <= rtol * max|b|`` (maps compared in their own units)."""
    a, b = a.double(), b.double()
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = b.abs().max().clamp_min(1e-12)
    err = ((a - b).abs().max() / scale).item()
    assert err <= rtol, f'relative error {err:.2e} > {rtol:.0e}'
    return err
