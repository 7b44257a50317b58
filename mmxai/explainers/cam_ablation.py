"""Ablation-CAM on space-time (Desai & Ramaswamy 2020, WACV).

``w_k = (s_c - s_c^{(k)}) / s_c``: ``s_c^{(k)}`` is the class score with
channel ``k`` of the target layer set to 0 at every position (``(t, h,
w)`` of every view; Recognizer2D: every frame; transformers: embedding
dimension ``k`` of every token), ``M = ReLU(sum_k w_k A_k)`` ``[B, V, t,
h, w]``, upsampled trilinearly to ``(T, H, W)``. As in the paper and
pytorch-grad-cam, ``s_c`` is the pre-softmax score and the division by it
is kept (it flips the map's sign where ``s_c < 0``; ``s_c = 0`` gives
weight 0). Per view: each view's weights use its own score ``s_{c,v}``
(all views ablated in one forward), so view chunks give the same maps.

Cost: one forward of the V views per channel, ``batch_size`` ablated
copies per forward (a forward hook zeroes channel ``k_i`` of copy ``i``);
``top_k`` ablates only the ``k`` channels of largest mean activation per
sample (the others weight 0).
"""
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import UnsupportedModelError
from ..registry import EXPLAINERS
from ..utils.layers import get_layer
from .cam_score import ScoreCAM


@EXPLAINERS.register_module()
class AblationCAM(ScoreCAM):
    """Ablation-CAM (see the module docstring).

    Args:
        batch_size: ablated copies of a sample per forward.
        top_k: ablate only the ``k`` channels of largest mean activation
            over views and ``(t, h, w)`` (``None``: all, the paper).
    """

    def channel_scores(self, name: str, grid: Tensor, video: Tensor,
                       inputs: Tensor, targets: Tensor):
        adapter = self.adapter
        b, v, k = grid.shape[:3]
        if self.top_k is not None and self.top_k < k:
            chosen = grid.flatten(3).mean((1, 3)).topk(self.top_k, dim=1)
            chosen = chosen.indices.sort(dim=1).values  # [B, K']
        else:
            chosen = torch.arange(k, device=grid.device).expand(b, k)
        kk = chosen.shape[1]
        layer = get_layer(self.model, name)
        weights = grid.new_zeros(b, v, kk)
        for i in range(b):
            with torch.no_grad():
                clean = adapter.scores(adapter.from_video(video[i:i + 1]),
                                       per_view=True)[0, :, targets[i]]
            start = 0
            while start < kk:
                size = max(1, int(self.batch_size or kk))
                ks = chosen[i, start:start + size]
                n = ks.numel()
                handle = layer.register_forward_hook(
                    lambda m, a, out, ks=ks, n=n: _zero_channels(out, ks, n,
                                                                 name))
                try:
                    with torch.no_grad():
                        s = adapter.scores(adapter.from_video(
                            video[i:i + 1].expand(n, *video.shape[1:])),
                            per_view=True)[:, :, targets[i]]  # [n, V]
                finally:
                    handle.remove()
                drop = (clean.unsqueeze(0) - s).float()
                denom = clean.float().unsqueeze(0)
                weights[i, :, start:start + n] = torch.where(
                    denom != 0, drop / torch.where(
                        denom != 0, denom, torch.ones_like(denom)),
                    torch.zeros_like(drop)).transpose(0, 1)
                start += n
        return weights, chosen.unsqueeze(1).expand(b, v, kk)


def _zero_channels(out, ks: Tensor, n: int, name: str):
    """Copy ``i`` of the layer output (rows ``[i r, (i+1) r)``) with
    channel ``ks[i]`` set to 0 (dim 1 of conv maps, the last of tokens)."""
    tensor = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(tensor, Tensor) or tensor.shape[0] % n:
        raise UnsupportedModelError(
            f"ablation_cam: layer '{name}' output does not have the batch "
            'first (e.g. the sequence-first tokens of UniFormerV2), so its '
            'copies cannot be ablated separately; use gradcam or scorecam')
    dim = 1 if tensor.dim() in (4, 5) else tensor.dim() - 1
    rows = tensor.shape[0] // n
    keep = torch.ones(n, tensor.shape[dim], device=tensor.device,
                      dtype=tensor.dtype)
    keep[torch.arange(n, device=tensor.device), ks] = 0
    keep = keep.view(n, 1, *[tensor.shape[d] if d == dim else 1
                             for d in range(1, tensor.dim())])
    scaled = (tensor.view(n, rows, *tensor.shape[1:]) * keep).view_as(tensor)
    if isinstance(out, tuple):
        return (scaled, *out[1:])
    if isinstance(out, list):
        return [scaled, *out[1:]]
    return scaled
