"""Perturbation CAMs on space-time: Score-CAM, SS-CAM, IS-CAM.

No gradients: channel ``k`` of a target layer, min-max normalised, becomes
a soft mask of the input; the class score of the masked input, softmaxed
over the channels, weighs the channel in ``M = ReLU(sum_k w_k A_k)``.

Masks in time: a channel ``A_k [t, h, w]`` is upsampled trilinearly
(``align_corners=False``) to the input's ``(T, H, W)``, so a temporal
stride of 2 at the layer spreads each feature time step over 2 input
frames with linear blending; Recognizer2D layers have one map per frame
(bilinear in space only); a SlowFast pathway's map goes to the pathway's
frames, then to the input's; a transformer's token grid is ``(t, h, w)``
of its patches. Each view (clip x crop) is masked by its own activations
and weighed by its own pre-softmax score ``s_{c,v}`` (all views of a
sample go through one forward, so the weights of a view equal those of
the view explained alone: the method runs in view chunks). The masked
input is ``x * H_k`` in the model's preprocessed space (0 = the data
preprocessor's mean colour), as in torch-cam and pytorch-grad-cam.

Cost and memory: one forward of the V views per channel mask (times the
noise samples of SS-CAM / the steps of IS-CAM), ``batch_size`` masked
clips per forward; masks are made per batch (upsampled from the small
activation grid), never for all channels at once, so memory is flat in
the number of channels; ``top_k`` keeps only the ``k`` channels with the
largest mean activation per view. Everything stays on the model's device.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..utils.hooks import capture_activations
from .attribution import Attribution
from .cam_gradient import _CAMFamily
from .gradcam import _as_tensor, _to_input_time
from .targets import TargetSpec, pred_basis, resolve_targets


@EXPLAINERS.register_module()
class ScoreCAM(_CAMFamily):
    """Score-CAM (Wang et al. 2020, CVPR workshops).

    ``H_k = n(up(A_k))`` with ``n`` the min-max to [0, 1] of channel ``k``
    over ``(t, h, w)`` (per view; 0 for a constant channel) and ``up`` the
    trilinear upsampling to ``(T, H, W)``;
    ``w_k = softmax_k(s_c(x * H_k) - s_c(x_b))`` (the baseline term is a
    constant under the softmax, so it is not computed);
    ``M = ReLU(sum_k w_k A_k)`` ``[B, V, t, h, w]`` at the layer, then
    upsampled to ``(T, H, W)``. ``s_c`` is the view's pre-softmax score, as
    in torch-cam and pytorch-grad-cam (the authors' code used the softmax
    probability without the channel softmax).

    Args:
        batch_size: masked clips (all views of a sample) per forward;
            lowered by the memory budget and on out-of-memory errors.
        top_k: only the ``k`` channels with the largest mean activation
            over ``(t, h, w)`` of each view get masks (the others weight
            0); ``None``: all channels (the paper).
    """
    elementwise = True  # no per-channel gradient weighting to choose
    views_separable = True
    reports_probs = True
    many_forwards = True
    memory_kind = 'forward'
    batch_attr = 'batch_size'

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, batch_size: int = 32,
                 top_k: Optional[int] = None, **kwargs):
        super().__init__(model, target_layers=target_layers, relu=relu,
                         **kwargs)
        for key, value in (('batch_size', batch_size), ('top_k', top_k)):
            if value is not None and (not isinstance(value, int) or
                                      isinstance(value, bool) or value < 1):
                raise MMXAIError(f'{self.name}: {key} must be a whole number '
                                 f'>= 1, got {value!r}')
        self.batch_size = batch_size
        self.top_k = top_k

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), batch_size=self.batch_size,
                    top_k=self.top_k)

    # ------------------------------------------------------ to override
    def num_passes(self) -> int:
        """Forwards per mask (noise samples, integration steps)."""
        return 1

    def perturb(self, masks: Tensor, step: int, rows: Tensor,
                views: Sequence[int]) -> Tensor:
        """Mask ``[n, V, T, H, W]`` of ``rows`` for pass ``step`` (view
        indices ``views`` of the whole input) -> the mask applied."""
        return masks

    # ------------------------------------------------------------ core
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        adapter = self.adapter
        with torch.no_grad(), \
                capture_activations(self.model, self.target_layers) as store:
            scores, probs = adapter.scores_and_probs(inputs)
            acts = store.collect()
        targets = resolve_targets(target, scores, data_samples,
                                  pred_basis(adapter, probs))
        video = adapter.to_video(inputs)
        cams = {}
        for name in self.target_layers:
            if name not in acts:
                raise MMXAIError(
                    f"layer '{name}' was not run by the forward pass; "
                    'choose a layer on the path to the classifier')
            grid = adapter.activation_grid(
                name, _as_tensor(name, acts[name]).detach(), inputs).float()
            weights, index = self.channel_scores(name, grid, video, inputs,
                                                 targets)
            chosen = grid.gather(2, index.view(*index.shape, 1, 1, 1).expand(
                -1, -1, -1, *grid.shape[3:]))
            cam = (weights.view(*weights.shape, 1, 1, 1) * chosen).sum(2)
            cams[name] = F.relu(cam) if self.relu else cam
        layer_maps = {name: adapter.upsample(cam, name, inputs)
                      for name, cam in cams.items()}
        return Attribution(self.fuse(cams, inputs), scores.detach(), targets,
                           layer_maps=layer_maps, probs=probs.detach())

    def _views(self, num: int) -> List[int]:
        """Indices of this pass's views in the whole input."""
        chunk = getattr(self, '_chunk', None)
        start = chunk.start if chunk is not None else 0
        return list(range(start, start + num))

    def channel_scores(self, name: str, grid: Tensor, video: Tensor,
                       inputs: Tensor, targets: Tensor):
        """Channel weights ``[B, V, K']`` (softmax over the chosen
        channels of the mean score over passes) and the chosen channel
        indices ``[B, V, K']``."""
        adapter = self.adapter
        b, v, k = grid.shape[:3]
        if self.top_k is not None and self.top_k < k:
            index = grid.flatten(3).mean(-1).topk(self.top_k, dim=2).indices
            index = index.sort(dim=2).values
        else:
            index = torch.arange(k, device=grid.device).expand(b, v, k)
        kk = index.shape[2]
        flat = grid.flatten(3)
        low = flat.amin(-1, keepdim=True)
        span = flat.amax(-1, keepdim=True) - low
        norm = torch.where(span > 0, (flat - low) / torch.where(
            span > 0, span, torch.ones_like(span)), torch.zeros_like(flat))
        norm = norm.view_as(grid).gather(2, index.view(b, v, kk, 1, 1, 1)
                                         .expand(-1, -1, -1, *grid.shape[3:]))
        # rows: (sample, chosen channel), sample-major
        rows = torch.arange(b * kk, device=grid.device)
        gains = grid.new_zeros(b * kk, v)
        views = self._views(v)
        passes = self.num_passes()
        start = 0
        while start < b * kk:
            size = max(1, int(self.batch_size or b * kk))
            part = rows[start:start + size]
            samples, channels = part // kk, part % kk
            small = norm[samples, :, channels]  # [n, V, t, h, w]
            masks = _to_input_time(adapter.upsample(small, name, inputs),
                                   adapter, inputs)  # [n, V, T, H, W]
            # [n, V, C, T, H, W]; one sample: a view of it, not n copies
            # (the masked product below is the only clip-sized tensor)
            clips = video[samples] if b > 1 else video.expand(
                len(part), *video.shape[1:])
            for step in range(passes):
                applied = self.perturb(masks, step, part, views)
                with torch.no_grad():
                    s = adapter.scores(adapter.from_video(
                        clips * applied.unsqueeze(2).to(clips.dtype)),
                        per_view=True)  # [n, V, classes]
                gains[part] += s.gather(2, targets[samples].view(-1, 1, 1)
                                        .expand(-1, s.shape[1], 1))[..., 0] \
                    .float()
            start += size
        gains = gains.view(b, kk, v).transpose(1, 2) / passes
        return gains.softmax(dim=2), index


@EXPLAINERS.register_module()
class SSCAM(ScoreCAM):
    """SS-CAM (Wang et al. 2020, "SS-CAM: Smoothed Score-CAM").

    Score-CAM with each mask smoothed by noise:
    ``w_k = softmax_k(1/N sum_i s_c(x * (H_k + d_i)))``,
    ``d_i ~ N(0, std^2)`` drawn at the input's ``(T, H, W)`` per mask
    (one map for all colour channels), as in torch-cam (noise on the
    upsampled normalised activation; std 2, N 35 by default there).
    Noise is drawn per view from a generator seeded by ``(seed, i, view)``
    and mask by mask, so results do not depend on the batch size or the
    view chunks; with one view and ``num_samples=1`` it is the stream of
    ``torch.manual_seed(seed)`` that torch-cam draws from (tested).

    Args:
        num_samples: noisy copies per mask (``N``).
        std: noise standard deviation (in mask units, masks in [0, 1]).
        seed: noise seed.
    """

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, batch_size: int = 32,
                 top_k: Optional[int] = None, num_samples: int = 35,
                 std: float = 2.0, seed: int = 0, **kwargs):
        super().__init__(model, target_layers=target_layers, relu=relu,
                         batch_size=batch_size, top_k=top_k, **kwargs)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise MMXAIError(f'{self.name}: num_samples must be a whole '
                             f'number >= 1, got {num_samples!r}')
        self.num_samples = num_samples
        self.std = float(std)
        self.seed = int(seed)
        self._generators: Dict[tuple, torch.Generator] = {}

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), num_samples=self.num_samples,
                    std=self.std, seed=self.seed)

    def num_passes(self) -> int:
        return self.num_samples

    def channel_scores(self, *args, **kwargs):
        self._generators = {}  # the same noise for every layer and call
        try:
            return super().channel_scores(*args, **kwargs)
        finally:
            self._generators = {}

    def perturb(self, masks: Tensor, step: int, rows: Tensor,
                views: Sequence[int]) -> Tensor:
        if self.std == 0:
            return masks
        out = torch.empty_like(masks)
        for j, view in enumerate(views):
            key = (step, view)
            gen = self._generators.get(key)
            if gen is None:
                gen = torch.Generator(device=masks.device)
                gen.manual_seed(self.seed + 7919 * step + 104729 * view)
                self._generators[key] = gen
            noise = torch.randn((masks.shape[0], *masks.shape[2:]),
                                generator=gen, device=masks.device,
                                dtype=masks.dtype)
            out[:, j] = masks[:, j] + self.std * noise
        return out


@EXPLAINERS.register_module()
class ISCAM(ScoreCAM):
    """IS-CAM (Naidu et al. 2020, "IS-CAM: Integrated Score-CAM").

    Score-CAM with the score integrated along the mask's scale:
    ``w_k = softmax_k(1/N sum_{i=1}^{N} s_c(c_i x * H_k))``,
    ``c_i = sum_{j=1}^{i} j / N``, as torch-cam computes it (its
    docstring's sum starts at ``j = 0``; the code's, followed here, at 1).

    Args:
        num_samples: integration steps (``N``, 10 in torch-cam).
    """

    def __init__(self, model: nn.Module,
                 target_layers: Optional[Sequence[str]] = None,
                 relu: bool = True, batch_size: int = 32,
                 top_k: Optional[int] = None, num_samples: int = 10,
                 **kwargs):
        super().__init__(model, target_layers=target_layers, relu=relu,
                         batch_size=batch_size, top_k=top_k, **kwargs)
        if not isinstance(num_samples, int) or num_samples < 1:
            raise MMXAIError(f'{self.name}: num_samples must be a whole '
                             f'number >= 1, got {num_samples!r}')
        self.num_samples = num_samples

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), num_samples=self.num_samples)

    def num_passes(self) -> int:
        return self.num_samples

    def perturb(self, masks: Tensor, step: int, rows: Tensor,
                views: Sequence[int]) -> Tensor:
        n = self.num_samples
        return masks * (sum(j / n for j in range(1, step + 2)))
