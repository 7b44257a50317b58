"""``CausalMSTCNHead``: TeCNO's causal multi-stage TCN as an MMAction2 head.

Two-stage phase recognizers (TeCNO, Czempiel et al. 2020) run a per-frame 2D
CNN and feed its features, over a long stretch of the video, to a temporal
model. Here that is the toolbox's own ``Recognizer2D`` (any 2D backbone:
``ResNet``, ``MobileNetV2``, ...) with this head: the frame features
``[B*T, D, h, w]`` are pooled to a sequence ``[B, D', T]`` (``spatial_pool``:
``'avg'``, the global mean, D' = D, as TeCNO; or ``'grid'``, a 1x1
convolution to ``grid_channels`` then the mean over each cell of a
``grid_size`` grid, flattened, D' = grid_channels * g * g: the sequence keeps
*where* a feature is, for data whose evidence is a place) and passed through
``num_stages`` stages of dilated *causal* residual convolutions (kernel 3,
dilation ``2**l``, padded on the left only, so the output at t sees frames
<= t); each later stage refines the softmax of the one before. Training
uses every frame's label (``frame_labels`` in the data samples, from
``mmxai.Cholec80Dataset``) with cross-entropy on every stage plus MS-TCN's
truncated smoothing loss; ``predict`` reports the last stage at the last
frame (online).

Context swap (``context_dropout``, training only): with that probability
per window, the frames before the last ``k`` (``k`` uniform in 1..T-1) are
replaced, with their labels, by the same frames of another window of the
batch (a random other time, usually of another procedure), so the earlier
frames of a window stop predicting its last frames' phase and the last
frame(s) must carry it (an online model otherwise learns that the previous
phase's instrument announces the next phase). ``'shuffle'`` takes each of
those frames independently from any window and time of the batch (so the
outputs before the junction see an unreliable context too). ``'zero'``
fills them with
zeros instead (their labels ignored), ``'last'`` with the last frame's
features (and label). Eval mode and ``forward`` / ``predict`` never swap.

Attribution over the feature time axis (:class:`FeatureSequence`): the
frame features are computed once (cached), and methods perturb the sequence
only, so explaining minute 40 reruns only the light TCN.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from mmaction.models.heads.base import BaseHead
from mmaction.registry import MODELS
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = ['CausalMSTCNHead', 'FeatureSequence', 'feature_occlusion',
           'feature_integrated_gradients']


class _CausalResidual(nn.Module):

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.pad = 2 * dilation
        self.conv = nn.Conv1d(channels, channels, 3, dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.conv(F.pad(x, (self.pad, 0))))
        return x + self.out(y)


class _Stage(nn.Module):

    def __init__(self, in_channels, channels, num_layers, num_classes):
        super().__init__()
        self.inp = nn.Conv1d(in_channels, channels, 1)
        self.layers = nn.ModuleList(
            [_CausalResidual(channels, 2 ** i) for i in range(num_layers)])
        self.cls = nn.Conv1d(channels, num_classes, 1)

    def forward(self, x):
        x = self.inp(x)
        for layer in self.layers:
            x = layer(x)
        return self.cls(x)


@MODELS.register_module()
class CausalMSTCNHead(BaseHead):
    """Causal multi-stage TCN over the frame features of a window.

    Args:
        num_classes: phases.
        in_channels: frame feature channels (ResNet-50: 2048).
        num_stages, num_layers, channels: TCN size (TeCNO: 2 stages of 8-10
            layers, 64 channels); the receptive field is ``2**num_layers``
            frames per stage.
        smooth_weight: weight of the truncated MSE smoothing loss (MS-TCN
            0.15).
        spatial_pool: ``'avg'`` (global average of the frame features) or
            ``'grid'`` (1x1 conv to ``grid_channels``, ReLU, average over
            each cell of a ``grid_size`` x ``grid_size`` grid, flattened).
        context_dropout: probability per training window of replacing the
            frames before the last k (k uniform in 1..T-1) by
            ``context_fill``: ``'swap'`` (those frames of another window of
            the batch, with their labels; a batch of one is left as is),
            ``'shuffle'`` (each of those frames an independent random frame
            of the batch, any window and time, with its label: the context
            is unreliable at every position, not only after the junction),
            ``'zero'`` (zeros, labels ignored) or ``'last'`` (the last
            frame's features and label). Only in :meth:`loss` in training
            mode; 0 (default) never.
    """

    def __init__(self, num_classes: int, in_channels: int,
                 num_stages: int = 2, num_layers: int = 8,
                 channels: int = 64, smooth_weight: float = 0.15,
                 dropout_ratio: float = 0.0, spatial_pool: str = 'avg',
                 grid_size: int = 4, grid_channels: int = 16,
                 context_dropout: float = 0.0, context_fill: str = 'swap',
                 **kwargs) -> None:
        kwargs.setdefault('average_clips', 'prob')
        super().__init__(num_classes, in_channels, **kwargs)
        if spatial_pool not in ('avg', 'grid'):
            raise ConfigError(f"spatial_pool={spatial_pool!r}: give 'avg' "
                              "or 'grid'")
        if not 0.0 <= float(context_dropout) <= 1.0:
            raise ConfigError(f'context_dropout={context_dropout}: give a '
                              'probability in [0, 1]')
        if context_fill not in ('swap', 'shuffle', 'zero', 'last'):
            raise ConfigError(f"context_fill={context_fill!r}: give 'swap', "
                              "'shuffle', 'zero' or 'last'")
        self.context_dropout = float(context_dropout)
        self.context_fill = context_fill
        self.smooth_weight = smooth_weight
        self.spatial_pool = spatial_pool
        self.grid_size = int(grid_size)
        seq_channels = in_channels
        if spatial_pool == 'grid':
            self.reduce = nn.Conv2d(in_channels, grid_channels, 1)
            seq_channels = grid_channels * self.grid_size ** 2
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio else None
        self.stages = nn.ModuleList(
            [_Stage(seq_channels, channels, num_layers, num_classes)] +
            [_Stage(num_classes, channels, num_layers, num_classes)
             for _ in range(num_stages - 1)])

    def init_weights(self) -> None:
        pass  # PyTorch's default initialisation of the convolutions

    # ------------------------------------------------------------ sequence
    def pool(self, x: Tensor, num_segs: int) -> Tensor:
        """Frame features ``[B*T, D, (h, w)]`` -> sequence ``[B, D', T]``."""
        if self.spatial_pool == 'grid':
            if x.dim() != 4:
                raise ConfigError(
                    "spatial_pool='grid' needs frame feature maps "
                    f"[B*T, D, h, w], got {tuple(x.shape)}")
            x = F.relu(self.reduce(x))
            x = F.adaptive_avg_pool2d(x, self.grid_size).flatten(1)
        elif x.dim() > 2:
            x = x.flatten(2).mean(-1)
        return x.view(-1, num_segs, x.shape[1]).transpose(1, 2)

    def sequence_logits(self, seq: Tensor) -> list:
        """Per-stage per-frame logits ``[B, K, T]`` of a sequence."""
        if self.dropout is not None:
            seq = self.dropout(seq)
        outs = [self.stages[0](seq)]
        for stage in self.stages[1:]:
            outs.append(stage(outs[-1].softmax(1)))
        return outs

    def forward(self, x: Tensor, num_segs: int = 1, **kwargs) -> Tensor:
        """Last stage's logits at the last frame: ``[B, K]`` (online)."""
        return self.sequence_logits(self.pool(x, num_segs))[-1][..., -1]

    def swap_context(self, seq: Tensor, labels: Tensor,
                     generator: Optional[torch.Generator] = None):
        """Training-time context replacement (``context_dropout``) of a
        sequence ``[B, D, T]`` and its labels ``[B, T]``; returns new
        tensors (the inputs are not changed). Identity in eval mode."""
        B, _, T = seq.shape
        if not self.training or not self.context_dropout or T < 2:
            return seq, labels
        if self.context_fill in ('swap', 'shuffle') and B < 2:
            return seq, labels
        dev = seq.device
        hit = torch.rand(B, generator=generator) < self.context_dropout
        keep = torch.randint(1, T, (B, ), generator=generator)
        # another window of the batch for each (never itself)
        donor = (torch.arange(B) + torch.randint(
            1, max(B, 2), (B, ), generator=generator)) % B
        t = torch.arange(T)
        sel = hit[:, None] & (t[None] < (T - keep)[:, None])  # [B, T]
        sel_d = sel.to(dev)
        if self.context_fill == 'swap':
            fill, fill_lab = seq[donor.to(dev)], labels[donor.to(dev)]
        elif self.context_fill == 'shuffle':
            # each frame an independent random frame of the batch
            rb = torch.randint(0, B, (B, T), generator=generator).to(dev)
            rt = torch.randint(0, T, (B, T), generator=generator).to(dev)
            fill = seq[rb, :, rt].permute(0, 2, 1)
            fill_lab = labels[rb, rt]
        elif self.context_fill == 'zero':
            fill = torch.zeros_like(seq)
            fill_lab = torch.full_like(labels, -100)
        else:  # 'last'
            fill = seq[..., -1:].expand_as(seq)
            fill_lab = labels[:, -1:].expand_as(labels)
        seq = torch.where(sel_d[:, None, :], fill, seq)
        labels = torch.where(sel_d, fill_lab, labels)
        return seq, labels

    def loss(self, feats, data_samples, **kwargs) -> dict:
        num_segs = kwargs.get('num_segs', 1)
        seq = self.pool(feats, num_segs)
        labels = []
        for s in data_samples:
            fl = s.metainfo.get('frame_labels')
            if fl is None or len(fl) != num_segs:
                lab = torch.full((num_segs, ), -100, dtype=torch.long)
                lab[-1] = int(s.gt_label)
            else:
                lab = torch.as_tensor(fl, dtype=torch.long)
            labels.append(lab)
        labels = torch.stack(labels).to(seq.device)  # [B, T]
        seq, labels = self.swap_context(seq, labels)
        outs = self.sequence_logits(seq)
        ce = sum(F.cross_entropy(o, labels, ignore_index=-100) for o in outs)
        losses = dict(loss_cls=ce)
        if self.smooth_weight and num_segs > 1:
            sm = 0
            for o in outs:
                lp = o.log_softmax(1)
                d = (lp[..., 1:] - lp.detach()[..., :-1]) ** 2
                sm = sm + d.clamp(max=16).mean()
            losses['loss_smooth'] = self.smooth_weight * sm
        return losses


class FeatureSequence:
    """A window's frame features computed once, and the TCN on them.

    ``seq`` ``[1, D, T]``: the pooled backbone features of every frame (the
    cache); :meth:`logits` runs the head only. Perturbation methods change
    ``seq``, never the pixels, so a long video's features are computed once.
    """

    def __init__(self, model: nn.Module, inputs: Tensor) -> None:
        self.model = model
        with torch.no_grad():
            feats, kw = model.extract_feat(inputs, test_mode=True)
            self.seq = model.cls_head.pool(feats, kw['num_segs'])

    def logits(self, seq: Optional[Tensor] = None) -> Tensor:
        """Last stage's per-frame logits ``[N, K, T]``."""
        return self.model.cls_head.sequence_logits(
            self.seq if seq is None else seq)[-1]


def feature_occlusion(fs: FeatureSequence, t: int, target: int,
                      baseline: Optional[Tensor] = None) -> Tensor:
    """Score drop of ``target`` at frame ``t`` when frame s's features are
    replaced by the baseline (default: the sequence mean), for every s:
    ``[T]`` (exactly 0 after t: the head is causal)."""
    seq = fs.seq
    T = seq.shape[-1]
    base = seq.mean(-1, keepdim=True) if baseline is None else baseline
    batch = seq.repeat(T + 1, 1, 1)  # the last row stays unperturbed
    idx = torch.arange(T)
    batch[idx, :, idx] = base.expand_as(seq)[0, :, idx].T
    with torch.no_grad():
        out = fs.logits(batch)[:, target, t]
    return out[-1] - out[:-1]


def feature_integrated_gradients(fs: FeatureSequence, t: int, target: int,
                                 steps: int = 32,
                                 baseline: Optional[Tensor] = None
                                 ) -> Tensor:
    """Integrated Gradients of ``target``'s logit at frame ``t`` over the
    feature sequence (straight path from the baseline, default the
    sequence mean; midpoint rule), summed over channels: ``[T]``. Sums to
    ``f(seq) - f(baseline)`` (completeness)."""
    seq = fs.seq
    base = seq.mean(-1, keepdim=True).expand_as(seq) if baseline is None \
        else baseline.expand_as(seq)
    alphas = (torch.arange(steps, dtype=seq.dtype) + 0.5) / steps
    path = (base + alphas.view(-1, 1, 1) * (seq - base)).requires_grad_(True)
    with torch.enable_grad():
        out = fs.logits(path)[:, target, t].sum()
        grad, = torch.autograd.grad(out, path)
    return ((seq - base)[0] * grad.mean(0)).sum(0).detach()
