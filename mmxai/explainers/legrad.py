"""LeGrad (Bousselham et al., ICCV 2025, arXiv 2404.03214): the gradient of
a per-layer score with respect to that layer's attention maps.

For each block ``l`` of a global-attention video ViT, the model's own
readout (final norm, cls token or mean pooling, ``cls_head``, view
averaging) is applied to the block's output tokens ``z_l``, giving the
score ``s_l = S_c(readout(z_l))``. With ``A_l`` the block's attention
probabilities ``[h, L, S]``::

    E_l[k] = mean_{h, q} ReLU(ds_l / dA_l[h, q, k])     (keys k: patches)
    E      = mean_{l in layers} E_l

TimeSformer's divided block has two attention calls (temporal ``T x T`` per
patch, spatial ``(1+P) x (1+P)`` per frame); each gives a value per patch
token (its key column, averaged over that call's queries) and the block's
``E_l`` is their mean. The cls key is dropped. One forward pass and one
backward per layer (each only from ``s_l`` back to ``A_l``).

Authors' code (``WalBouss/LeGrad``, ``legrad/wrapper.py``): per layer the
intermediate tokens go through ``ln_post`` and the projection, the gradient
of the image-text similarity w.r.t. that layer's attention is clamped at 0,
averaged over heads and query rows, the cls column dropped, the layers
summed and the sum min-max normalised. Deviations: the readout is the
recognizer's own (cls token for TimeSformer, the VideoMAE head's pooling)
where the CLIP wrapper mean-pools the intermediate tokens; layers are
averaged (a constant factor before normalisation); every layer by default
as in the paper (the released wrapper's default ``layer_index=-2`` keeps
the last two: ``start_layer=-2``).
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapters.base import average_view_scores
from ..errors import MMXAIError, UnsupportedModelError
from ..registry import EXPLAINERS
from .attention import AttentionCall, record_attention
from .attribution import Attribution
from .base import BaseExplainer
from .targets import TargetSpec, pred_basis, resolve_targets

#: Backbones with global attention over a fixed token set and a readout
#: LeGrad can apply to intermediate tokens.
LEGRAD_BACKBONES = ('TimeSformer', 'VisionTransformer')
#: Transformers whose attention is windowed, pooled or per frame.
LOCAL_ATTENTION_BACKBONES = ('SwinTransformer3D', 'MViT', 'UniFormer',
                             'UniFormerV2')


def unsupported_reason(method: str, model: nn.Module) -> Optional[str]:
    """``None`` if ``method`` applies to ``model``'s backbone, else the
    one-line reason."""
    kind = type(getattr(model, 'backbone', None)).__name__
    if kind in LEGRAD_BACKBONES:
        return None
    if kind in LOCAL_ATTENTION_BACKBONES:
        return (f'{method} needs global self-attention over a fixed token '
                f'set (TimeSformer, VideoMAE ViT); {kind} attends within '
                'windows, pooled or per-frame tokens, for which mmxai has no '
                f'{method} operator yet: use gradcam')
    return (f'{method} reads the self-attention of a video transformer '
            f'(TimeSformer, VideoMAE ViT); {kind} has none: use gradcam')


def token_layout(explainer: BaseExplainer, inputs: Tensor) -> Dict[str, Any]:
    """The backbone's token layout, read from the model: ``family``,
    ``mode`` (TimeSformer attention type, or ``'mean_pooled'`` /
    ``'first_token'`` / ``'feat_map'`` for VideoMAE), grid ``t, h, w``."""
    bb = explainer.model.backbone
    ad = explainer.adapter
    if type(bb).__name__ == 'TimeSformer':
        h, w = ad.patch_grid(inputs)
        return dict(family='timesformer', mode=bb.attention_type,
                    t=int(bb.num_frames), h=h, w=w)
    t, h, w = ad.token_grid(inputs)
    if getattr(bb, 'return_feat_map', False):
        mode = 'feat_map'
    elif getattr(bb, 'fc_norm', None) is not None:
        mode = 'mean_pooled'
    else:
        mode = 'first_token'
    return dict(family='videomae', mode=mode, t=t, h=h, w=w)


def key_grid(kind: str, keys: Tensor, lay: Dict[str, Any],
             bv: int) -> Tensor:
    """Per-key values of one attention call ``[M, S]`` -> ``[B*V, t, h*w]``
    over patch tokens (cls keys dropped).

    TimeSformer: ``temporal`` ``[B*V*P, T]``, ``spatial`` and space-only
    ``[B*V*T, 1+P]``, joint ``[B*V, 1+P*T]`` (patch-major ``(p t)``).
    VideoMAE: ``[B*V, t*h*w]`` (``(t h w)``, no cls).
    """
    t, p = lay['t'], lay['h'] * lay['w']
    if lay['family'] == 'videomae':
        return keys.reshape(bv, t, p)
    if kind == 'temporal':
        return keys.reshape(bv, p, t).transpose(1, 2)
    if kind == 'spatial' or lay['mode'] == 'space_only':
        return keys[:, 1:].reshape(bv, t, p)
    return keys[:, 1:].reshape(bv, p, t).transpose(1, 2)  # joint


def attention_blocks(backbone: nn.Module) -> nn.ModuleList:
    if type(backbone).__name__ == 'TimeSformer':
        return backbone.transformer_layers.layers
    return backbone.blocks


def _readout(backbone: nn.Module, lay: Dict[str, Any]
             ) -> Callable[[Tensor], Tensor]:
    """The backbone's computation after its blocks, for any block's
    output tokens (TimeSformer: space-only frame mean, ``norm``, cls token;
    VideoMAE: ``norm``, then ``fc_norm`` of the token mean, the first token,
    or the feature map)."""
    def timesformer(x: Tensor) -> Tensor:
        if lay['mode'] == 'space_only':
            x = x.view(-1, backbone.num_frames, *x.shape[-2:]).mean(1)
        return backbone.norm(x)[:, 0]

    def videomae(x: Tensor) -> Tensor:
        x = backbone.norm(x)
        if lay['mode'] == 'feat_map':
            x = x.reshape(x.shape[0], lay['t'], lay['h'], lay['w'], -1)
            return x.permute(0, 4, 1, 2, 3)
        if lay['mode'] == 'mean_pooled':
            return backbone.fc_norm(x.mean(1))
        return x[:, 0]
    return timesformer if lay['family'] == 'timesformer' else videomae


class _Segment:
    """One forward of the backbone: per block its attention calls and
    output tokens (MMAction2 may run the samples of a batch one by one)."""

    def __init__(self):
        self.calls: List[List[AttentionCall]] = []
        self.tokens: List[Tensor] = []


class BlockRecorder:
    """Records, for every backbone forward inside the ``with`` block, each
    block's attention calls (via :func:`record_attention`) and output
    tokens. ``segments``: one :class:`_Segment` per backbone forward."""

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone
        self.segments: List[_Segment] = []
        self._handles = []
        self._start = 0

    def __enter__(self) -> 'BlockRecorder':
        self._ctx = record_attention(self.backbone)
        self.calls = self._ctx.__enter__()
        self._handles.append(self.backbone.register_forward_pre_hook(
            lambda m, a: self.segments.append(_Segment())))
        for blk in attention_blocks(self.backbone):
            self._handles.append(blk.register_forward_pre_hook(self._pre))
            self._handles.append(blk.register_forward_hook(self._post))
        return self

    def _pre(self, module, args):
        self._start = len(self.calls)

    def _post(self, module, args, output):
        seg = self.segments[-1]
        seg.calls.append(list(self.calls[self._start:]))
        seg.tokens.append(output[0] if isinstance(output, (tuple, list))
                          else output)

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        self._handles.clear()
        return self._ctx.__exit__(*exc)


def layer_indices(n_blocks: int, start_layer: int) -> List[int]:
    """Blocks ``start_layer`` (negative: from the end) to the last."""
    start = start_layer if start_layer >= 0 else n_blocks + start_layer
    if not 0 <= start < n_blocks:
        raise MMXAIError(f'start_layer must be in [-{n_blocks}, '
                         f'{n_blocks - 1}] for {n_blocks} blocks, got '
                         f'{start_layer}')
    return list(range(start, n_blocks))


@EXPLAINERS.register_module()
class LeGrad(BaseExplainer):
    """LeGrad: ``E = mean_l mean_{h,q} ReLU(d s_l / d A_l)`` over patch
    keys, ``s_l`` the target's score read out from block ``l``'s tokens by
    the model's own norm, pooling and head. Maps ``[B, V, T, H, W]``
    (token grid upsampled trilinearly). One forward, one backward per layer.

    Args:
        start_layer: first block used (negative: counted from the end);
            0 (default): every block, as in the paper; -2: the authors'
            released default (last two blocks).
    """
    reports_probs = True
    callable_targets = False

    def __init__(self, model: nn.Module, start_layer: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        reason = unsupported_reason(self.name, self.model)
        if reason:
            raise UnsupportedModelError(reason)
        if not isinstance(start_layer, int) or isinstance(start_layer, bool):
            raise MMXAIError(f'start_layer must be a whole number, got '
                             f'{start_layer!r}')
        n = len(attention_blocks(self.model.backbone))
        self.layers = layer_indices(n, start_layer)
        self.start_layer = start_layer

    def settings(self) -> Dict[str, Any]:
        return dict(start_layer=self.start_layer, layers=list(self.layers),
                    head_fusion='mean of ReLU(grad)', query_fusion='mean',
                    layer_fusion='mean')

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        bb = self.model.backbone
        lay = token_layout(self, inputs)
        readout = _readout(bb, lay)
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        with BlockRecorder(bb) as rec, torch.enable_grad():
            x = inputs.detach().clone().requires_grad_(True)
            scores, probs = self.adapter.scores_and_probs(x)
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(self.adapter, probs))
            grid, layer_scores = self._layers_map(rec.segments, readout,
                                                  lay, b, v, targets)
        grid = grid.reshape(b, v, lay['t'], lay['h'], lay['w'])
        maps = self.adapter.upsample(grid.float(), 'backbone', inputs)
        return Attribution(
            maps, scores.detach(), targets, layer_maps={'legrad': maps},
            extras={'token_map': grid.detach(), 'layer_scores': layer_scores},
            probs=probs.detach())

    def _layers_map(self, segments: Sequence[_Segment], readout,
                    lay: Dict[str, Any], b: int, v: int, targets: Tensor
                    ) -> Tuple[Tensor, Tensor]:
        """``[B*V, t, h*w]`` LeGrad grid and the per-layer target scores
        ``[B, len(layers)]``. The backbone may have run on chunks of the
        rows (``test_cfg.max_testing_views``, per-sample loops): each
        block's tokens are joined in row order before the readout."""
        head = self.model.cls_head
        per_frame = lay['t'] if lay['mode'] == 'space_only' else 1
        rows = [seg.tokens[-1].shape[0] // per_frame for seg in segments]
        if sum(rows) != b * v:
            raise UnsupportedModelError(
                f'{self.name}: the backbone ran on {sum(rows)} views, not '
                f'{b * v}; cannot pair its blocks with the batch')
        total, per_layer = 0, []
        for li in self.layers:
            calls = [seg.calls[li] for seg in segments]
            if not all(calls):
                raise UnsupportedModelError(
                    f'{self.name}: block {li} recorded no attention')
            tokens = torch.cat([seg.tokens[li] for seg in segments])
            s = average_view_scores(head, head(readout(tokens)), b)
            s_c = s.gather(1, targets.view(-1, 1))
            per_layer.append(s_c.detach())
            flat = [c for seg_calls in calls for c in seg_calls]
            grads = iter(torch.autograd.grad(
                s_c.sum(), [c.probs for c in flat], retain_graph=True,
                allow_unused=True))
            parts = []
            for seg_calls, n in zip(calls, rows):
                layer = 0
                for call in seg_calls:
                    g = next(grads)
                    if g is None:
                        g = torch.zeros_like(call.probs)
                    keys = F.relu(g.float()).mean(1).mean(1)  # heads, queries
                    layer = layer + key_grid(call.kind, keys, lay, n)
                parts.append(layer / len(seg_calls))
            total = total + torch.cat(parts)
        return total / len(self.layers), torch.cat(per_layer, 1)


__all__ = ['LeGrad', 'BlockRecorder', 'key_grid', 'token_layout',
           'unsupported_reason']
