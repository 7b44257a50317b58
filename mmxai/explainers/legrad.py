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

Hierarchical transformers (Video Swin, MViT, UniFormer v1) and
UniFormerV2: the stage widths differ and the head reads only the last
stage (UniFormerV2: the decoder's query), so ``s_l`` is the model's final
target score ``S`` for every block (``dS / dA_l``, as issue 18 states it;
one backward for all blocks). ``E_l`` is laid out on the
block's key tokens and brought to the patch-embedding grid (the first
stage's), then averaged over the blocks:

* Swin (``window`` calls): per window, ReLU, head mean, and per key the
  mean over the queries that may attend to it (real tokens of the window,
  same shifted-window region of MMAction2's ``compute_mask``); windows put
  back on the padded grid, rolled back by ``+shift``, padding cropped;
  then copied back through each ``PatchMerging`` (each token takes the
  value of the merged token covering it: nearest 2x upsampling in H, W).
* MViT (``pooled`` calls): head and all-query mean, cls key dropped, on
  the block's pooled key grid, trilinearly resized to the patch grid
  (the kv grid is not an exact subdivision of it in general).
* UniFormer v1: the global-attention ``SABlock``s only (``CBlock``s have
  no attention; ``start_layer`` counts SABlocks); head and query mean on
  the stage's grid, copied back through the strided patch embeddings
  (each input token takes its covering output's value).

* UniFormerV2 (its head reads the decoder's query, so the final score
  too): the CLIP blocks' per-frame attention, head and query mean, cls key
  dropped, on the patch grid ``(T, H, W)`` (one grid for all blocks); the
  decoders' cross-attention is not a ViT block and is not used.
"""
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..adapters.base import average_view_scores
from ..errors import MMXAIError, UnsupportedModelError
from ..registry import EXPLAINERS
from .attention import AttentionCall, record_attention
from .attention_decoder import DECODER_BACKBONES
from .attention_local import LOCAL_BACKBONES
from .attention_pooling import POOLED_BACKBONES
from .attention_windows import WINDOWED_BACKBONES
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .targets import TargetSpec, pred_basis, resolve_targets

#: Backbones with global attention over a fixed token set and a readout
#: LeGrad can apply to intermediate tokens.
LEGRAD_BACKBONES = ('TimeSformer', 'VisionTransformer')
#: Hierarchical transformers (stage widths differ): LeGrad with the
#: model's final score for every block (:func:`hierarchical_legrad`).
#: Transformers whose attention is windowed, pooled or per frame (Video
#: Swin, MViT, UniFormer, UniFormerV2): LeGrad takes the model's final score
#: for every block there (:func:`hierarchical_legrad`; UniFormerV2 is not
#: hierarchical, but its head reads the decoder's query).
LOCAL_ATTENTION_BACKBONES = WINDOWED_BACKBONES + POOLED_BACKBONES + \
    LOCAL_BACKBONES + DECODER_BACKBONES
HIERARCHICAL_BACKBONES = LOCAL_ATTENTION_BACKBONES


def unsupported_reason(method: str, model: nn.Module,
                       hierarchical: bool = False) -> Optional[str]:
    """``None`` if ``method`` applies to ``model``'s backbone, else the
    one-line reason. ``hierarchical``: the method also has a layout for
    :data:`HIERARCHICAL_BACKBONES` (LeGrad does; STAA, which shares this
    check, does not)."""
    kind = type(getattr(model, 'backbone', None)).__name__
    if kind in LEGRAD_BACKBONES:
        return None
    if kind in LOCAL_ATTENTION_BACKBONES and hierarchical:
        if any(getattr(m, 'with_cp', False) for m in model.backbone.modules()):
            return (f'{method} needs the recorded attention in the autograd '
                    f'graph; with_cp (checkpointing) on {kind} recomputes it')
        return None
    if kind in LOCAL_ATTENTION_BACKBONES:
        return (f'{method} needs global self-attention over a fixed token '
                f'set (TimeSformer, VideoMAE ViT); {kind} attends within '
                'windows, pooled or per-frame tokens, for which mmxai has no '
                f'{method} operator yet: use gradcam')
    if hierarchical:
        return (f'{method} reads the self-attention of a video transformer '
                '(TimeSformer, VideoMAE ViT, Video Swin, MViT, '
                f'UniFormer(V2)); {kind} has none: use gradcam')
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


def attention_blocks(backbone: nn.Module) -> Sequence[nn.Module]:
    if type(backbone).__name__ == 'TimeSformer':
        return backbone.transformer_layers.layers
    if type(backbone).__name__ in WINDOWED_BACKBONES:
        return [blk for layer in backbone.layers for blk in layer.blocks]
    if type(backbone).__name__ in DECODER_BACKBONES:
        return backbone.transformer.resblocks
    if type(backbone).__name__ in LOCAL_BACKBONES:  # global-attention blocks
        return [blk for i in range(1, 5)
                for blk in getattr(backbone, f'blocks{i}', [])
                if type(blk).__name__ == 'SABlock']
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
    block's attention calls (via :func:`record_attention`, with its
    ``leaves``) and output tokens. ``segments``: one :class:`_Segment` per
    backbone forward."""

    def __init__(self, backbone: nn.Module, leaves: bool = False):
        self.backbone = backbone
        self.leaves = leaves
        self.segments: List[_Segment] = []
        self._handles = []
        self._start = 0

    def __enter__(self) -> 'BlockRecorder':
        self._ctx = record_attention(self.backbone, leaves=self.leaves)
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


# ------------------------- hierarchical: Video Swin, MViT, UniFormer (v1)
def swin_window_mask(meta: Dict[str, Any], like: Tensor) -> Tensor:
    """``[nW, N, N]`` 1 where query and key of a window are both real
    tokens and not separated by the shifted-window mask (MMAction2's own
    ``compute_mask``), else 0."""
    dp, hp, wp = meta['padded']
    wd, wh, ww = meta['window']
    shift = meta['shift']
    d, h, w = meta['grid']
    real = torch.zeros(1, dp, hp, wp, dtype=like.dtype, device=like.device)
    real[:, :d, :h, :w] = 1
    if any(shift):
        real = torch.roll(real, shifts=tuple(-s for s in shift),
                          dims=(1, 2, 3))
    real = real.view(dp // wd, wd, hp // wh, wh, wp // ww, ww).permute(
        0, 2, 4, 1, 3, 5).reshape(-1, wd * wh * ww)
    pairs = real.unsqueeze(2) * real.unsqueeze(1)
    if any(shift):
        from mmaction.models.backbones.swin import compute_mask
        mask = compute_mask(dp, hp, wp, meta['window'], shift, like.device)
        pairs = pairs * (mask == 0).to(like.dtype)
    return pairs


def swin_key_grid(g: Tensor, meta: Dict[str, Any]) -> Tensor:
    """``E_l`` of one Swin block on its stage grid ``[B, D, H, W]`` from
    ``g = dS/dA`` ``[B*nW, h, N, N]``: ``ReLU``, head mean, then per key
    the mean over the window's queries that may attend to it (real tokens,
    same shifted-window region); windows laid back on the padded grid,
    rolled back by ``+shift``, padding cropped."""
    batch = meta['batch']
    pairs = swin_window_mask(meta, g)  # [nW, N, N]
    n_w = pairs.shape[0]
    r = F.relu(g.float()).mean(1).view(batch, n_w, *pairs.shape[1:])
    keys = (r * pairs).sum(2) / pairs.sum(1).clamp(min=1)  # [B, nW, N]
    dp, hp, wp = meta['padded']
    wd, wh, ww = meta['window']
    z = keys.view(batch, dp // wd, hp // wh, wp // ww, wd, wh, ww)
    z = z.permute(0, 1, 4, 2, 5, 3, 6).reshape(batch, dp, hp, wp)
    if any(meta['shift']):
        z = torch.roll(z, shifts=tuple(meta['shift']), dims=(1, 2, 3))
    d, h, w = meta['grid']
    return z[:, :d, :h, :w]


def merge_copy_back(r: Tensor, meta: Dict[str, Any]) -> Tensor:
    """Stage ``s+1`` values ``[B, D, H2, W2]`` onto stage ``s`` ``[B, D, H,
    W]``: each token takes the value of the merged token that covers it
    (the patch merging's 2x2 receptive field; nearest upsampling)."""
    d, h, w = meta['grid']
    r = r.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    return r[:, :, :h, :w]


def mvit_key_grid(g: Tensor, meta: Dict[str, Any]) -> Tensor:
    """``E_l`` of one MViT block from ``g = dS/dA`` ``[B, h, Lq, Lkv]``:
    ``ReLU``, mean over heads and all query rows, cls key dropped, on the
    block's pooled key grid ``[B, Tk, Hk, Wk]``, then trilinearly resized
    (``align_corners=False``) to the patch-embedding grid ``meta['out']``."""
    keys = F.relu(g.float()).mean(1).mean(1)[:, meta['cls']:]
    grid = keys.reshape(keys.shape[0], 1, *meta['kv']['out_size'])
    grid = F.interpolate(grid, size=tuple(meta['out']), mode='trilinear',
                         align_corners=False)
    return grid[:, 0]


def conv_copy_back(r: Tensor, g: Dict[str, Any]) -> Tensor:
    """Values on a strided convolution's output grid ``[B, To, Ho, Wo]``
    onto its input grid ``[B, T, H, W]``: each input token takes the mean
    of the outputs whose kernel window covers it (kernel = stride, no
    padding, as UniFormer's patch embeddings: the covering output's value,
    nearest upsampling)."""
    b = r.shape[0]
    box = torch.ones(1, 1, *g['kernel'], dtype=r.dtype, device=r.device)
    base = [(o - 1) * s - 2 * p + k for o, s, p, k in
            zip(g['out_size'], g['stride'], g['padding'], g['kernel'])]
    extra = [n - m for n, m in zip(g['in_size'], base)]

    def spread(z):
        return F.conv_transpose3d(z, box, stride=g['stride'],
                                  padding=g['padding'], output_padding=extra)
    total = spread(r.reshape(b, 1, *g['out_size']))
    cover = spread(torch.ones(1, 1, *g['out_size'], dtype=r.dtype,
                              device=r.device))
    return (total / cover.clamp(min=1))[:, 0]


def _frames_map(calls: Sequence[AttentionCall], layers: Sequence[int],
                grads: Dict[int, Tensor], frames: int) -> Tensor:
    """UniFormerV2: sum over the chosen CLIP blocks of ``E_l`` (per-frame
    attention ``[N*T, h, 1+HW, 1+HW]``: ReLU, head and query mean, cls key
    dropped) on the patch grid ``[N, T, H, W]`` (the model's ``(n t)``
    frame order, square ``H = W``); the decoders' cross-attention is not a
    block of the ViT and is not used."""
    blocks = [c for c in calls if c.kind == 'full']
    if len(blocks) <= max(layers):
        raise UnsupportedModelError(
            f'legrad: {len(blocks)} attention blocks recorded, expected '
            f'{max(layers) + 1}')
    total = 0
    for i in layers:
        keys = F.relu(grads[id(blocks[i])].float()).mean(1).mean(1)[:, 1:]
        side = int(round(keys.shape[1] ** 0.5))
        total = total + keys.reshape(-1, frames, side, side)
    return total


def _segment_map(calls: Sequence[AttentionCall], layers: Sequence[int],
                 grads: Dict[int, Tensor], base: Optional[Tuple[int, ...]]
                 ) -> Tensor:
    """Sum over the chosen blocks of one backbone forward of ``E_l`` on the
    patch-embedding grid ``[M, T0, H0, W0]``. Swin / UniFormer: from the
    last call to the first, maps added on their stage's grid and copied
    back through each merge / strided patch embedding (not through
    ``patch_embed1``); MViT: every block resized to ``base``."""
    blocks = [c for c in calls if c.kind in ('window', 'pooled', 'full')]
    if len(blocks) <= max(layers):
        raise UnsupportedModelError(
            f'legrad: {len(blocks)} attention blocks recorded, expected '
            f'{max(layers) + 1}')
    chosen = {id(blocks[i]) for i in layers}
    stage, first_pool = {}, None
    for call in calls:  # UniFormer: each attention's grid and batch
        if call.kind == 'conv_pool':
            first_pool = call if first_pool is None else first_pool
            grid = (call.meta['batch'], *call.meta['out_size'])
        elif call.kind == 'full':
            stage[id(call)] = grid
    acc = None
    for call in reversed(list(calls)):
        if call.kind == 'conv_pool':
            if acc is not None and call is not first_pool:
                acc = conv_copy_back(acc, call.meta)
            continue
        if call.kind == 'full':
            shape = stage[id(call)]
            if acc is None:
                acc = torch.zeros(shape, device=call.probs.device)
            if id(call) in chosen:
                keys = F.relu(grads[id(call)].float()).mean(1).mean(1)
                acc = acc + keys.reshape(shape)
            continue
        if call.kind == 'merge':
            if acc is not None:
                acc = merge_copy_back(acc, call.meta)
            continue
        if call.kind == 'window':
            if acc is None:
                acc = torch.zeros(call.meta['batch'], *call.meta['grid'],
                                  device=call.probs.device)
            if id(call) in chosen:
                acc = acc + swin_key_grid(grads[id(call)], call.meta)
        elif call.kind == 'pooled' and id(call) in chosen:
            e = mvit_key_grid(grads[id(call)], dict(call.meta, out=base))
            acc = e if acc is None else acc + e
    return acc


def hierarchical_legrad(explainer: 'LeGrad', inputs: Tensor,
                        target: TargetSpec,
                        data_samples: Optional[Sequence]) -> Attribution:
    """LeGrad on Swin / MViT / UniFormer(V2) with the final target score
    ``S`` for every block (stage widths differ, so the head cannot read an
    intermediate block): one forward, one backward for all blocks.
    ``E = mean_l E_l`` on the patch-embedding grid ``[B, V, T0, H0, W0]``."""
    bb = explainer.model.backbone
    b, v, _, _, _ = explainer.adapter.input_shape(inputs)
    starts: List[int] = []
    # the graph starts at the first attention (frozen parameters, a leaf)
    with record_attention(bb, structural=True, leaves=True) as calls, \
            frozen_parameters(explainer.model), torch.enable_grad():
        hook = bb.register_forward_pre_hook(
            lambda m, a: starts.append(len(calls)))
        try:
            scores, probs = explainer.adapter.scores_and_probs(
                inputs.detach())
        finally:
            hook.remove()
        targets = resolve_targets(target, scores, data_samples,
                                  pred_basis(explainer.adapter, probs))
        attn = [c for c in calls if c.probs is not None]
        if not attn:
            raise UnsupportedModelError(
                f'{explainer.name}: no attention was recorded')
        s_c = scores.gather(1, targets.view(-1, 1))
        grads = torch.autograd.grad(s_c.sum(), [c.probs for c in attn],
                                    allow_unused=True)
    by_call = {}
    for c, g in zip(attn, grads):
        by_call[id(c)] = torch.zeros_like(c.probs) if g is None else \
            g.detach()
        c.probs = c.probs.detach()
    del grads
    pooled = [c for c in calls if c.kind == 'pooled']
    base = tuple(pooled[0].meta['in_size']) if pooled else None
    bounds = starts + [len(calls)]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        seg = calls[lo:hi]
        if seg:
            if type(bb).__name__ in DECODER_BACKBONES:
                parts.append(_frames_map(seg, explainer.layers, by_call,
                                         int(bb.transformer.T)))
            else:
                parts.append(_segment_map(seg, explainer.layers, by_call,
                                          base))
    grid = torch.cat(parts) / len(explainer.layers)
    if grid.shape[0] != b * v:
        raise UnsupportedModelError(
            f'{explainer.name}: the backbone ran on {grid.shape[0]} views, '
            f'not {b * v}; cannot pair its blocks with the batch')
    grid = grid.reshape(b, v, *grid.shape[1:])
    maps = explainer.adapter.upsample(grid.float(), 'backbone', inputs)
    return Attribution(
        maps, scores.detach(), targets, layer_maps={'legrad': maps},
        extras={'token_map': grid.detach(),
                'layer_scores': s_c.detach().expand(-1, len(
                    explainer.layers))},
        probs=probs.detach())


@EXPLAINERS.register_module()
class LeGrad(BaseExplainer):
    """LeGrad: ``E = mean_l mean_{h,q} ReLU(d s_l / d A_l)`` over patch
    keys, ``s_l`` the target's score read out from block ``l``'s tokens by
    the model's own norm, pooling and head (TimeSformer, VideoMAE; one
    forward, one backward per layer), or the model's final score for every
    block on Swin, MViT, UniFormer and UniFormerV2 (one forward, one
    backward; see the module docstring for the layouts). Maps ``[B, V, T,
    H, W]`` (token grid upsampled trilinearly).

    Args:
        start_layer: first block used (negative: counted from the end);
            0 (default): every block, as in the paper; -2: the authors'
            released default (last two blocks).
    """
    reports_probs = True
    callable_targets = False
    #: views in passes (``max_views_per_pass``): a view's tokens, its
    #: attention and ``ds_l / dA_l`` do not depend on the other views once
    #: each pass's scores are weighed by its share of the views
    views_separable = True
    #: per-sample ``[B, len(layers)]`` scores: the passes' shares add up
    additive_extras = ('layer_scores',)

    def __init__(self, model: nn.Module, start_layer: int = 0, **kwargs):
        super().__init__(model, **kwargs)
        reason = unsupported_reason(self.name, self.model,
                                    hierarchical=True)
        if reason:
            raise UnsupportedModelError(reason)
        if not isinstance(start_layer, int) or isinstance(start_layer, bool):
            raise MMXAIError(f'start_layer must be a whole number, got '
                             f'{start_layer!r}')
        n = len(attention_blocks(self.model.backbone))
        self.layers = layer_indices(n, start_layer)
        self.start_layer = start_layer

    def settings(self) -> Dict[str, Any]:
        out = dict(start_layer=self.start_layer, layers=list(self.layers),
                   head_fusion='mean of ReLU(grad)', query_fusion='mean',
                   layer_fusion='mean')
        kind = type(self.model.backbone).__name__
        if kind in HIERARCHICAL_BACKBONES:
            out.update(score="model's final score for every block",
                       common_grid='patch-embedding grid',
                       stage_upsampling='trilinear' if kind in
                       POOLED_BACKBONES else 'none (one grid)' if kind in
                       DECODER_BACKBONES else 'copy back through patch '
                       'merging / strided patch embeddings (nearest)')
        return out

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        bb = self.model.backbone
        if type(bb).__name__ in HIERARCHICAL_BACKBONES:
            return hierarchical_legrad(self, inputs, target, data_samples)
        lay = token_layout(self, inputs)
        readout = _readout(bb, lay)
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        # the graph starts at the first attention (frozen parameters, the
        # input without grad, the first attention a leaf)
        with BlockRecorder(bb, leaves=True) as rec, \
                frozen_parameters(self.model), torch.enable_grad():
            scores, probs = self.adapter.scores_and_probs(inputs.detach())
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
        # in a pass of n_c of V views, s_l weighed by n_c / V: gradients and
        # scores as in one pass (the adapter's scores are weighed so too)
        chunk = self._chunk
        share = 1.0 if chunk is None else \
            (chunk.stop - chunk.start) / chunk.video.shape[1]
        total, per_layer = 0, []
        for li in self.layers:
            calls = [seg.calls[li] for seg in segments]
            if not all(calls):
                raise UnsupportedModelError(
                    f'{self.name}: block {li} recorded no attention')
            tokens = torch.cat([seg.tokens[li] for seg in segments])
            s = average_view_scores(head, head(readout(tokens)), b) * share
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


__all__ = ['LeGrad', 'BlockRecorder', 'hierarchical_legrad', 'key_grid',
           'mvit_key_grid', 'swin_key_grid', 'token_layout',
           'unsupported_reason']
