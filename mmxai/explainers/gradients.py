"""Input-gradient methods: plain gradients (saliency), Integrated Gradients,
SmoothGrad. Our own implementation: batched steps/samples per sample, no
parameter gradients, views handled by the adapter (see docs/perturbation.md
for why Captum's versions are also reachable through ``CaptumExplainer``)."""
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..errors import MMXAIError
from ..registry import EXPLAINERS
from ..baselines import make_baseline
from .attribution import Attribution
from .base import BaseExplainer
from .batching import batches
from .memory import release_memory
from .gradient_utils import REDUCTIONS, frozen_parameters, reduce_channels
from .grad_checkpoint import (check_grad_checkpoint, checkpointed_segments,
                              wants_checkpointing)
from .options import SCORES, check_choice, check_positive
from .progress import Progress
from .view_scorer import model_inputs
from .targets import TargetSpec


class _GradientExplainer(BaseExplainer):
    """Common machinery: ``d s_c / d x`` for batches of inputs.

    ``s_c`` is the view-averaged pre-softmax score of the target
    (``score='logit'``, default: the quantity whose completeness IG
    guarantees) or its probability (``'prob'``: each view's softmax averaged
    over views, what ``predict`` reports with ``average_clips='prob'``).
    Gradients are taken for the whole multi-view input, so every view gets
    its own map of the view-averaged score. Colour channels are reduced by ``reduction``.

    Both scores are sums of per-view terms (``1/V sum_v s_v``, ``1/V sum_v
    softmax(z_v)``), so the views are explained in passes of at most
    ``max_views_per_pass`` views (:attr:`views_separable`), each forward
    holding ``batch_size`` steps/samples of those views; maps equal one
    pass.

    ``grad_checkpoint`` (``True`` / ``False`` / ``'auto'``, default): run
    the backbone's blocks under gradient checkpointing
    (:mod:`.grad_checkpoint`): a backward then holds the blocks' inputs and
    one block's activations instead of the whole graph, at the cost of one
    extra forward of every block per backward; maps equal to float
    rounding. ``'auto'``: on under ``max_memory='toolbox'`` or when the
    memory plan's estimate of one view's graph exceeds the budget, and
    switched on before giving up when one view with batch 1 runs out of
    memory. ``last_memory_plan['grad_checkpoint']`` says what ran.
    """
    default_reduction = 'max_abs'
    views_separable = True
    batch_attr = 'batch_size'
    reports_probs = True
    per_sample_passes = True

    def __init__(self, model: nn.Module, score: str = 'logit',
                 reduction: Optional[str] = None, batch_size: int = 8,
                 progress: Optional[bool] = None,
                 grad_checkpoint: Union[bool, str] = 'auto', **kwargs):
        super().__init__(model, **kwargs)
        self.grad_checkpoint = check_grad_checkpoint(grad_checkpoint)
        self._checkpoint_forced = False  # 'auto' after out of memory
        check_choice('score', score, SCORES)
        reduction = reduction or self.default_reduction
        check_choice('reduction', reduction, REDUCTIONS)
        check_positive('batch_size', batch_size)
        self.score, self.reduction = score, reduction
        self.batch_size, self.progress = int(batch_size), progress

    def settings(self) -> Dict[str, Any]:
        return dict(score=self.score, reduction=self.reduction,
                    batch_size=self.batch_size,
                    grad_checkpoint=self.grad_checkpoint)

    def _checkpointing(self) -> bool:
        """Whether gradient passes run checkpointed now (recorded in
        ``last_memory_plan``)."""
        on = self._checkpoint_forced or wants_checkpointing(
            self.grad_checkpoint, self.toolbox_budget, self.last_memory_plan)
        if self.last_memory_plan is not None:
            self.last_memory_plan['grad_checkpoint'] = on
        return on

    def _plan(self, video, toolbox_chunk) -> None:
        self._checkpoint_forced = False
        super()._plan(video, toolbox_chunk)

    def _shrink(self, video: Tensor) -> None:
        """Before giving up at one view and batch 1: checkpointing on
        (``'auto'``), the pass retried."""
        if self.grad_checkpoint == 'auto' and not self._checkpointing() \
                and (self._views_per_pass or 1) == 1 and \
                (self._batch_size() or 1) == 1:
            self._checkpoint_forced = True
            release_memory(video.device)
            return
        super()._shrink(video)

    def objective(self, video: Tensor) -> Tensor:
        """``[N, V, C, T, H, W]`` -> ``[N, K]`` scores as configured
        (``'prob'``: per-view softmax averaged, as ``predict`` reports)."""
        if self.score == 'prob':
            return self.adapter.probs(model_inputs(self.adapter, video))
        return self.adapter.scores(model_inputs(self.adapter, video)).float()

    def gradients(self, video: Tensor, cls: int,
                  bar: Optional[Progress] = None) -> Tuple[Tensor, Tensor]:
        """``(grads [N, V, C, T, H, W], target scores [N])``, in batches."""
        grads, outs = [], []
        with torch.enable_grad(), frozen_parameters(self.model), \
                checkpointed_segments(self.model, self._checkpointing()):
            for start, stop in batches(video.shape[0], self.batch_size):
                x = video[start:stop].detach().requires_grad_(True)
                s = self.objective(x)[:, cls]
                grads.append(torch.autograd.grad(s.sum(), x)[0])
                outs.append(s.detach())
                if bar is not None:
                    bar.update(stop - start)
        return torch.cat(grads), torch.cat(outs)

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        scores, probs, targets = self.scores_probs_targets(
            inputs, target, data_samples)
        video = self.adapter.to_video(inputs).detach()
        attrs, extras = [], {}
        bar = Progress(video.shape[0] * self.evaluations(), self.name,
                       self.progress)
        with bar:
            for b in range(video.shape[0]):
                attr, extra = self.sample_attribution(video[b:b + 1],
                                                      int(targets[b]), bar, b)
                attrs.append(attr)
                for k, val in extra.items():
                    extras.setdefault(k, []).append(val)
        attr = torch.cat(attrs)  # [B, V, C, T, H, W]
        extras = {k: torch.stack(v) for k, v in extras.items()}
        extras['attributions'] = attr
        return Attribution(reduce_channels(attr, self.reduction).float(),
                           scores, targets, extras=extras, probs=probs)

    def evaluations(self) -> int:
        return 1

    def sample_attribution(self, video: Tensor, cls: int, bar: Progress,
                           index: int) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``video`` ``[1, V_c, C, T, H, W]`` (sample ``index``; in view
        chunks the views ``self._chunk`` names) -> attributions of the same
        shape and per-sample extras."""
        raise NotImplementedError

    def chunk_views(self, value):
        """A tensor option with a view axis ``[1|B, V, C, T, H, W]`` (e.g. a
        baseline) cut to the views of the current chunk."""
        chunk = self._chunk
        if chunk is not None and isinstance(value, Tensor) and \
                value.dim() == 6 and value.shape[1] == chunk.video.shape[1]:
            return value[:, chunk.start:chunk.stop]
        return value


@EXPLAINERS.register_module()
class Saliency(_GradientExplainer):
    """Plain gradients (Simonyan et al. 2014): ``max_c |d s / d x_c|``."""

    def sample_attribution(self, video, cls, bar, index):
        grads, _ = self.gradients(video, cls, bar)
        return grads, {}


@EXPLAINERS.register_module()
class IntegratedGradients(_GradientExplainer):
    """Integrated Gradients (Sundararajan et al. 2017), midpoint rule:
    ``(x - x0) * 1/n sum_i grad s(x0 + (i + 0.5)/n (x - x0))``.

    Channels are summed (``reduction='sum'``) so the map keeps
    completeness: ``sum map = s(x) - s(x0)`` up to the integration error,
    reported per sample in ``extras['convergence_delta']``. In view chunks
    each chunk's part of ``s`` is its views' share (``n_c/V s_c``), so the
    chunks' deltas and score differences add up to the one-pass ones.

    Args:
        n_steps: integration steps (batched by ``batch_size``).
        baseline: ``'mean'`` (0 after normalisation), ``'blur'``,
            ``'temporal_mean'`` (every frame replaced by the clip's mean
            frame: the motion removed, the static appearance kept; the map
            then credits what changes over time, and completeness holds
            against that clip) or a number.
    """
    many_forwards = True
    default_reduction = 'sum'
    additive_extras = ('convergence_delta', 'score_difference')

    def __init__(self, model: nn.Module, n_steps: int = 32,
                 baseline='mean',
                 blur_sigma: Optional[Sequence[float]] = None, **kwargs):
        super().__init__(model, **kwargs)
        check_positive('n_steps', n_steps)
        self.n_steps, self.baseline = int(n_steps), baseline
        self.blur_sigma = blur_sigma

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), n_steps=self.n_steps,
                    baseline=self.baseline if not isinstance(
                        self.baseline, Tensor) else 'tensor')

    def evaluations(self) -> int:
        return self.n_steps

    def sample_attribution(self, video, cls, bar, index):
        base = make_baseline(video, self.chunk_views(self.baseline),
                             self.blur_sigma)
        delta = video - base
        alphas = (torch.arange(self.n_steps, device=video.device,
                               dtype=video.dtype) + 0.5) / self.n_steps
        total = torch.zeros_like(video)
        for start, stop in batches(self.n_steps, self.batch_size):
            a = alphas[start:stop].view(-1, *([1] * (video.dim() - 1)))
            grads, _ = self.gradients(base + a * delta, cls)
            total += grads.sum(0, keepdim=True)
            bar.update(stop - start)
        attr = delta * total / self.n_steps
        with torch.no_grad():  # s(x), s(x0): one forward, or two of one
            ends = self.objective(torch.cat([video, base]))[:, cls] \
                if self.batch_size > 1 else torch.cat(
                    [self.objective(v)[:, cls] for v in (video, base)])
        delta_s = attr.sum() - (ends[0] - ends[1])
        return attr, {'convergence_delta': delta_s.detach(),
                      'score_difference': (ends[0] - ends[1]).detach()}


@EXPLAINERS.register_module()
class SmoothGrad(_GradientExplainer):
    """SmoothGrad (Smilkov et al. 2017): the mean gradient over
    ``n_samples`` copies with Gaussian noise of standard deviation
    ``noise_level * (max(x) - min(x))``, then ``max_c |.|`` (or
    ``squared=True``: mean of squared gradients, SmoothGrad-Squared), the
    range over all views of the sample. The noise of copy ``i`` of view
    ``v`` comes from its own generator seeded by ``(seed, v, i)``:
    reproducible, and the same whatever the batch size or the view chunks.
    """
    many_forwards = True

    def __init__(self, model: nn.Module, n_samples: int = 16,
                 noise_level: float = 0.15, squared: bool = False,
                 seed: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        check_positive('n_samples', n_samples)
        if noise_level < 0:
            raise MMXAIError(f'noise_level must be >= 0, got {noise_level}')
        self.n_samples, self.noise_level = int(n_samples), float(noise_level)
        self.squared, self.seed = bool(squared), int(seed)

    def settings(self) -> Dict[str, Any]:
        return dict(super().settings(), n_samples=self.n_samples,
                    noise_level=self.noise_level, squared=self.squared,
                    seed=self.seed)

    def evaluations(self) -> int:
        return self.n_samples

    def noise(self, view: int, copy: int, shape) -> Tensor:
        """Standard normal noise of copy ``copy`` of view ``view``."""
        seed = ((self.seed * 1000003 + view) * 1000003 + copy) % 2 ** 63
        return torch.randn(shape, generator=torch.Generator().manual_seed(
            seed))

    def sample_attribution(self, video, cls, bar, index):
        chunk = self._chunk
        whole = video if chunk is None else chunk.video[index]
        first = 0 if chunk is None else chunk.start
        std = self.noise_level * float(whole.max() - whole.min())
        total = torch.zeros_like(video)
        shape = video.shape[2:]
        for start, stop in batches(self.n_samples, self.batch_size):
            noise = torch.stack([torch.stack([
                self.noise(first + v, i, shape)
                for v in range(video.shape[1])])
                for i in range(start, stop)]).to(video) * std
            grads, _ = self.gradients(video + noise, cls)
            total += (grads.pow(2) if self.squared else grads).sum(
                0, keepdim=True)
            bar.update(stop - start)
        return total / self.n_samples, {}
