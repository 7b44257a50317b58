"""Attention rollout (Abnar & Zuidema 2020) and gradient-weighted attention
relevance (Chefer et al., ICCV 2021) for global-attention video ViTs:
TimeSformer (divided, joint and space-only attention) and VideoMAE ViT, and
for Video Swin's shifted windows (operators in :mod:`.attention_windows`).

Each attention call is recorded as per-head probabilities ``[M, h, L, S]``
that stay in the autograd graph: ``nn.MultiheadAttention`` calls are
recomputed by a forward hook from the module's own weights (the weights it
returns are a detached-from-use view), VideoMAE's ``Attention`` exposes them
as the output of its ``attn_drop``. A call is one of three operators on the
token set:

* ``full``: ``L x L`` attention over all tokens of the call's batch;
* ``temporal`` (TimeSformer divided): ``T x T`` per patch, the cls token
  passes unchanged;
* ``spatial`` (TimeSformer divided): ``(1+P) x (1+P)`` per frame, the cls
  token replicated per frame and its outputs averaged over frames.

* ``window`` (Video Swin): ``[B*nW, h, N, N]`` per window, with the
  block's geometry (grid, window, shift, padding) in ``AttentionCall.meta``;
  with ``structural=True`` the patch mergings between stages are recorded
  too (``kind='merge'``, ``probs=None``).

Only one row of the product is needed (the cls token's, or the mean over
tokens for VideoMAE's mean-pooled head), so operators are applied to a row
vector from the last call to the first: ``r <- r O_B ... O_1``.
"""
import contextlib
from dataclasses import dataclass
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import EXPLAINERS
from .attention_decoder import (DECODER_BACKBONES, extractor_forward,
                                propagate_decoder)
from .attention_local import LOCAL_BACKBONES, propagate_local
from .attention_pooling import (POOLED_BACKBONES, mvit_attention_forward,
                                mvit_block_geometry, pool_geometry,
                                propagate_pooled)
from .attention_windows import (WINDOWED_BACKBONES, merge_geometry,
                                propagate_windowed, swin_block_geometry)
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .targets import TargetSpec, pred_basis, resolve_targets

SUPPORTED_BACKBONES = ('TimeSformer', 'VisionTransformer')
_KINDS = {'DividedTemporalAttentionWithNorm': 'temporal',
          'DividedSpatialAttentionWithNorm': 'spatial'}


@dataclass
class AttentionCall:
    """One recorded attention: ``kind`` and probabilities ``[M, h, L, S]``
    (``[M, L, S]`` when recorded with a ``head_reduce``; ``None`` for a
    structural ``merge``); ``meta``: the call's token geometry where the
    operator needs one (Swin windows and mergings), else ``None``."""
    kind: str
    probs: Optional[Tensor]
    meta: Optional[Dict[str, Any]] = None


def _identity(t: Tensor) -> Tensor:
    return t


def as_leaf(t: Tensor) -> Tensor:
    """``t`` computed without a graph (parameters frozen, inputs not
    requiring grad) as a leaf that requires grad, so that the graph of a
    backward starts there; ``t`` itself otherwise (no grad mode, or
    already on a graph)."""
    if torch.is_grad_enabled() and t.is_floating_point() and \
            not t.requires_grad:
        return t.detach().requires_grad_(True)
    return t


def _mha_probs_forward(m: nn.MultiheadAttention, args, kwargs,
                       leaf: Callable[[Tensor], Tensor] = _identity):
    """``nn.MultiheadAttention`` recomputed so that the per-head
    probabilities are used downstream (``leaf`` applied to them first).
    Returns ``(output, probs)``."""
    names = ('query', 'key', 'value')
    q, k, v = [args[i] if i < len(args) else kwargs[n]
               for i, n in enumerate(names)]
    masks = [kwargs.get('key_padding_mask'), kwargs.get('attn_mask')]
    if len(args) > 3:
        masks.append(args[3])
    if any(x is not None for x in masks) or m.bias_k is not None or \
            m.add_zero_attn:
        raise UnsupportedModelError(
            'attention methods support unmasked nn.MultiheadAttention only')
    if m.batch_first:
        q, k, v = (x.transpose(0, 1) for x in (q, k, v))
    length, batch, embed = q.shape
    heads = m.num_heads
    dim = embed // heads
    if m._qkv_same_embed_dim:
        wq, wk, wv = m.in_proj_weight.chunk(3)
    else:
        wq, wk, wv = m.q_proj_weight, m.k_proj_weight, m.v_proj_weight
    bq, bk, bv = m.in_proj_bias.chunk(3) if m.in_proj_bias is not None \
        else (None, None, None)

    def split(x, w, b):
        return F.linear(x, w, b).reshape(x.shape[0], batch * heads,
                                         dim).transpose(0, 1)
    qh, kh, vh = split(q, wq, bq), split(k, wk, bk), split(v, wv, bv)
    attn = torch.softmax((qh * dim ** -0.5) @ kh.transpose(1, 2), dim=-1)
    probs = leaf(attn.view(batch, heads, length, -1))
    out = probs.reshape(batch * heads, length, -1) @ vh
    out = out.transpose(0, 1).reshape(length, batch, embed)
    out = F.linear(out, m.out_proj.weight, m.out_proj.bias)
    if m.batch_first:
        out = out.transpose(0, 1)
    return out, probs


def _leaf_output(out: Tensor, leaf: Callable[[Tensor], Tensor]
                 ) -> Tuple[Tensor, Optional[Tensor]]:
    """A module output through ``leaf``: ``(recorded, replacement)``; the
    forward goes on with a copy of a new leaf (``replacement``; ``None``:
    ``out`` unchanged), so later in-place ops never touch the leaf."""
    rec = leaf(out)
    return rec, (None if rec is out else rec.clone())


def _swin_hooks(backbone: nn.Module, calls: List[AttentionCall],
                structural: bool, reduce: Callable[[Tensor], Tensor],
                leaf: Callable[[Tensor], Tensor] = _identity) -> list:
    """Hooks on Video Swin: each ``SwinTransformerBlock3D`` call's geometry
    (pre-hook on the block), its window probabilities (output of
    ``attn.attn_drop``, through ``leaf``), and, if ``structural``, each
    ``PatchMerging``."""
    handles = []
    pending: Dict[nn.Module, Dict[str, Any]] = {}
    for m in backbone.modules():
        name = type(m).__name__
        if name == 'SwinTransformerBlock3D':
            def pre(mod, args, mod_attn=m.attn):
                pending[mod_attn] = swin_block_geometry(mod, args[0].shape)

            def post(mod, args, out, mod_attn=m.attn):
                rec, out = _leaf_output(out, leaf)
                calls.append(AttentionCall('window', reduce(rec),
                                           pending.get(mod_attn)))
                return out
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.attn.attn_drop.register_forward_hook(post))
        elif name == 'PatchMerging' and structural:
            handles.append(m.register_forward_pre_hook(
                lambda mod, args: calls.append(AttentionCall(
                    'merge', None, merge_geometry(args[0].shape)))))
    return handles


def _uniformer_hooks(backbone: nn.Module, calls: List[AttentionCall]
                     ) -> list:
    """Structural hooks on UniFormer (v1): the strided patch embeddings
    (``conv_pool``) and the depthwise convolutions inside residuals
    (``local``: each block's ``pos_embed``, ``CBlock.attn``), with their
    geometry; the global ``Attention`` is recorded as ``full``."""
    if type(backbone).__name__ not in LOCAL_BACKBONES:
        return []
    handles = []

    def add(conv: nn.Module, kind: str):
        def pre(mod, args):
            x = args[0]
            meta = pool_geometry(mod, tuple(x.shape[2:]))
            meta['batch'] = int(x.shape[0])
            calls.append(AttentionCall(kind, None, meta))
        handles.append(conv.register_forward_pre_hook(pre))
    for name, m in backbone.named_children():
        if name.startswith('patch_embed') and isinstance(
                getattr(m, 'proj', None), nn.Conv3d):
            add(m.proj, 'conv_pool')
    for m in backbone.modules():
        if type(m).__name__ in ('CBlock', 'SABlock'):
            add(m.pos_embed, 'local')
            if isinstance(m.attn, nn.Conv3d):
                add(m.attn, 'local')
    return handles


def _uniformerv2_hooks(backbone: nn.Module, calls: List[AttentionCall],
                       reduce: Callable[[Tensor], Tensor],
                       leaf: Callable[[Tensor], Tensor] = _identity
                       ) -> list:
    """Structural hooks on UniFormerV2: ``Local_MHRA`` (``local_t``) and
    ``dpe`` convolutions with their geometry, and each decoder
    ``Extractor`` recomputed with its cross-attention exposed
    (``decoder``, ``[N, h, 1, T*(1+HW)]``)."""
    if type(backbone).__name__ not in DECODER_BACKBONES:
        return []
    handles = []

    def add(conv: nn.Module, kind: str, watch: nn.Module):
        def pre(mod, args):
            x = args[0]
            meta = pool_geometry(conv, tuple(x.shape[2:]))
            meta['batch'] = int(x.shape[0])
            calls.append(AttentionCall(kind, None, meta))
        handles.append(watch.register_forward_pre_hook(pre))
    tr = backbone.transformer
    for m in backbone.modules():
        if type(m).__name__ == 'Local_MHRA':
            add(m.pos_embed[2], 'local_t', m)
    for conv in tr.dpe:
        add(conv, 'dpe', conv)

    def dec_hook(mod, args, output):
        out, aff = extractor_forward(mod, *(leaf(a) for a in args))
        calls.append(AttentionCall('decoder', reduce(aff)))
        return out
    for dec in tr.dec:
        handles.append(dec.register_forward_hook(dec_hook))
    return handles


def _mvit_hooks(backbone: nn.Module, calls: List[AttentionCall],
                reduce: Callable[[Tensor], Tensor],
                leaf: Callable[[Tensor], Tensor] = _identity) -> list:
    """Hooks on MViT: each ``MultiScaleAttention`` recomputed with its
    probabilities exposed (used downstream), recorded as ``kind='pooled'``
    with the block's pooling geometry (``attention_pooling``); ``leaf``
    applies to the attention's input tokens."""
    handles = []
    for blk in backbone.modules():
        if type(blk).__name__ != 'MultiScaleBlock' or \
                type(getattr(blk, 'attn', None)).__name__ != \
                'MultiScaleAttention':
            continue

        def hook(mod, args, kwargs, output, blk=blk):
            x = args[0] if args else kwargs['x']
            in_size = args[1] if len(args) > 1 else kwargs['in_size']
            out, probs, kv_shape = mvit_attention_forward(mod, leaf(x),
                                                          in_size)
            meta = mvit_block_geometry(blk, in_size)
            if tuple(meta['kv']['out_size']) != tuple(kv_shape) or tuple(
                    meta['q']['out_size']) != tuple(out[1]):
                raise UnsupportedModelError(
                    'MViT pooling geometry does not match the pooled grids')
            calls.append(AttentionCall('pooled', reduce(probs), meta))
            return out
        handles.append(blk.attn.register_forward_hook(hook,
                                                      with_kwargs=True))
    return handles


@contextlib.contextmanager
def record_attention(backbone: nn.Module, structural: bool = False,
                     head_reduce: Optional[Callable[[Tensor], Tensor]] = None,
                     leaves: bool = False) -> Iterator[List[AttentionCall]]:
    """Record every attention call of ``backbone`` during forwards inside
    the block (in call order). Hooks are removed on exit.

    ``structural``: also record the token-mixing steps between attentions
    that an operator product needs (Swin's patch merging). ``head_reduce``:
    applied to each ``[M, h, L, S]`` as it is recorded (e.g. the head mean,
    so that rollout keeps one ``[M, L, S]`` per call). ``leaves``: an
    attention computed without a graph (parameters frozen, the input not
    requiring grad: the first call) is recorded as a leaf that requires
    grad (MViT, UniFormerV2's decoders: its input tokens), so the graph of a
    backward to the attention starts at the first attention and the layers
    below it keep nothing (:func:`as_leaf`); the gradients w.r.t. every
    recorded attention are those of a graph from the input."""
    calls: List[AttentionCall] = []
    reduce = head_reduce if head_reduce is not None else (lambda p: p)
    leaf = as_leaf if leaves else _identity
    handles = []
    kinds: Dict[nn.Module, str] = {}
    for parent in backbone.modules():
        kind = _KINDS.get(type(parent).__name__)
        if kind is not None and isinstance(getattr(parent, 'attn', None),
                                           nn.MultiheadAttention):
            kinds[parent.attn] = kind
    try:
        handles.extend(_swin_hooks(backbone, calls, structural, reduce,
                                   leaf))
        handles.extend(_mvit_hooks(backbone, calls, reduce, leaf))
        if structural:
            handles.extend(_uniformer_hooks(backbone, calls))
            handles.extend(_uniformerv2_hooks(backbone, calls, reduce,
                                              leaf))
        for m in backbone.modules():
            if isinstance(m, nn.MultiheadAttention):
                def hook(mod, args, kwargs, output, kind=kinds.get(m, 'full')):
                    out, probs = _mha_probs_forward(mod, args, kwargs, leaf)
                    calls.append(AttentionCall(kind, reduce(probs)))
                    return out, probs.mean(1)
                handles.append(m.register_forward_hook(hook, with_kwargs=True))
            elif type(m).__name__ == 'Attention' and isinstance(
                    getattr(m, 'attn_drop', None), nn.Module):  # VideoMAE
                def drop_hook(mod, args, out):
                    rec, out = _leaf_output(out, leaf)
                    calls.append(AttentionCall('full', reduce(rec)))
                    return out
                handles.append(m.attn_drop.register_forward_hook(drop_hook))
        yield calls
    finally:
        for h in handles:
            h.remove()


def apply_operator(r: Tensor, kind: str, mat: Tensor, patches: int,
                   frames: int) -> Tensor:
    """Row vectors ``r`` times one attention operator built from ``mat``
    (``[M, L, S]``, heads already reduced).

    ``full``: ``r [M, L]``. ``temporal``/``spatial``: ``r [B, 1 + P*T]`` in
    TimeSformer's cls + patch-major ``(p t)`` order, ``mat`` ``[B*P, T, T]``
    or ``[B*T, 1+P, 1+P]``.
    """
    if kind == 'full':
        return torch.bmm(r.unsqueeze(1), mat).squeeze(1)
    b = r.shape[0]
    cls, tok = r[:, :1], r[:, 1:].reshape(b, patches, frames)
    if kind == 'temporal':
        out = torch.bmm(tok.reshape(b * patches, 1, frames), mat)
        return torch.cat([cls, out.reshape(b, patches * frames)], dim=1)
    if kind == 'spatial':
        u = torch.cat([cls.unsqueeze(1).expand(b, frames, 1) / frames,
                       tok.transpose(1, 2)], dim=2)  # [B, T, 1+P]
        out = torch.bmm(u.reshape(b * frames, 1, 1 + patches), mat)
        out = out.reshape(b, frames, 1 + patches)
        new_cls = out[..., 0].sum(1, keepdim=True)
        return torch.cat([new_cls, out[..., 1:].transpose(1, 2).reshape(
            b, patches * frames)], dim=1)
    raise ValueError(f'unknown attention kind {kind}')


class _AttentionExplainer(BaseExplainer):
    """Shared layout logic: which token row to start from, how to read the
    resulting row as a ``[B, V, t, h, w]`` grid.

    Views are separable (:attr:`BaseExplainer.views_separable`): the
    backbone attends within one view (its tokens), the head averages the
    views' scores, so a view's attention, its gradient ``dS/dA_v = 1/V
    ds_v/dA_v`` and its map do not depend on the other views; views run in
    passes of ``max_views_per_pass`` with maps equal to one pass."""
    reports_probs = True
    views_separable = True

    def __init__(self, model: nn.Module, **kwargs):
        super().__init__(model, **kwargs)
        kind = type(getattr(self.model, 'backbone', None)).__name__
        if kind not in SUPPORTED_BACKBONES + WINDOWED_BACKBONES + \
                POOLED_BACKBONES + LOCAL_BACKBONES + DECODER_BACKBONES:
            raise UnsupportedModelError(
                f'{self.name} needs global self-attention (TimeSformer, '
                f'VideoMAE ViT) or windowed/pooled/local attention with a '
                f'known token operator (Video Swin, MViT, UniFormer(V2)); '
                f'{kind} is not one: use gradcam')
        self.backbone_type = kind
        self.windowed = kind in WINDOWED_BACKBONES
        self.pooled = kind in POOLED_BACKBONES
        self.local = kind in LOCAL_BACKBONES
        self.decoder = kind in DECODER_BACKBONES
        if self.local and getattr(getattr(self.model, 'cls_head', None),
                                  'spatial_type', 'avg') != 'avg':
            raise UnsupportedModelError(
                f'{self.name} on UniFormer needs an average-pooling head')
        if self.windowed:
            self._check_swin()

    def pooled_grid(self, calls: Sequence[AttentionCall], inputs: Tensor,
                    residual: str) -> Tensor:
        """MViT: the head's row (the cls token, else the mean over the last
        grid) through every pooled block, read on the patch-embedding grid
        ``[B, V, T0, H0, W0]`` (the cls column dropped)."""
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        ops = [(c.probs, c.meta) for c in calls if c.kind == 'pooled']
        if not ops:
            raise UnsupportedModelError(
                f'{self.name}: no MViT attention was recorded')
        first, last = ops[0][1], ops[-1][1]
        cls = last['cls']
        head_cls = bool(getattr(self.model.cls_head, 'with_cls_token', cls))
        if head_cls and not cls:
            raise UnsupportedModelError(
                f'{self.name}: the head reads a cls token the blocks lack')
        size = last['q']['out_size']
        n = size[0] * size[1] * size[2]
        mat = ops[-1][0]
        start = torch.zeros(mat.shape[0], cls + n, device=mat.device,
                            dtype=torch.float32)
        if head_cls:
            start[:, 0] = 1.0
        else:
            start[:, cls:] = 1.0 / n
        r = propagate_pooled(ops, start, residual)
        if residual == 'relevance' and not head_cls:  # minus the I paths
            r = r - propagate_pooled([(torch.zeros_like(m), meta)
                                      for m, meta in ops], start, residual)
        grid = r[:, first['cls']:].reshape(-1, *first['in_size'])
        return grid.reshape(b, v, *grid.shape[1:])

    def _check_swin(self) -> None:
        """Swin's head must average-pool the last stage's tokens."""
        bb = self.model.backbone
        last = len(bb.layers) - 1
        if tuple(getattr(bb, 'out_indices', (last,))) != (last,):
            raise UnsupportedModelError(
                f'{self.name} on Swin needs the last stage as the only '
                f'output (out_indices={tuple(bb.out_indices)})')
        head = getattr(self.model, 'cls_head', None)
        if getattr(head, 'spatial_type', 'avg') != 'avg':
            raise UnsupportedModelError(
                f'{self.name} on Swin needs an average-pooling head')

    def decoder_grid(self, calls: Sequence[AttentionCall], inputs: Tensor,
                     residual: str) -> Tensor:
        """UniFormerV2: the head's mix of the decoder query and the frames'
        cls tokens back through decoders and blocks, on the patch grid
        ``[B, V, T, h, w]``."""
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        ops = [(c.kind, c.probs, c.meta) for c in calls]
        full = [m for k, m, _ in ops if k == 'full']
        if not full or not any(k == 'decoder' for k, _, _ in ops):
            raise UnsupportedModelError(
                f'{self.name}: no UniFormerV2 attention was recorded')
        h, w = self.adapter.patch_grid(inputs)
        nt, length = full[0].shape[0], full[0].shape[-1]
        n = b * v
        t = nt // n
        mix = torch.sigmoid(self.model.backbone.transformer.balance.detach()
                            .float()).mean().to(full[0].device)
        tokens = torch.zeros(n, t, length, device=full[0].device)
        tokens[:, :, 0] = mix / t
        query = (1 - mix) * torch.ones(n, device=full[0].device)
        r = propagate_decoder(ops, tokens, query, residual)
        return r[:, :, length - h * w:].reshape(b, v, t, h, w)

    def local_grid(self, calls: Sequence[AttentionCall], inputs: Tensor,
                   residual: str) -> Tensor:
        """UniFormer: the mean-pooled row through global attention, local
        aggregators and patch embeddings, on ``patch_embed1``'s grid
        ``[B, V, T0, H0, W0]`` (relevance: minus the identity path)."""
        return self._structural_grid(calls, inputs, residual, 'conv_pool',
                                     'UniFormer patch embedding',
                                     propagate_local)

    def windowed_grid(self, calls: Sequence[AttentionCall], inputs: Tensor,
                      residual: str) -> Tensor:
        """Swin: the mean-pooled row through windows and merges, on the
        first stage's token grid, ``[B, V, D0, H0, W0]`` (relevance: minus
        the identity path, as ``R - I`` for VideoMAE)."""
        return self._structural_grid(calls, inputs, residual, 'window',
                                     'Swin window attention',
                                     propagate_windowed)

    def _structural_grid(self, calls: Sequence[AttentionCall],
                         inputs: Tensor, residual: str, first: str,
                         what: str, propagate) -> Tensor:
        """The recorded operators ``(kind, probs, meta)`` (the first of kind
        ``first``) through ``propagate`` -> ``[B, V, ...]`` (relevance: minus
        the identity path)."""
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        ops = [(c.kind, c.probs, c.meta) for c in calls]
        if not ops or ops[0][0] != first:
            raise UnsupportedModelError(
                f'{self.name}: no {what} was recorded')
        r, ident = propagate(ops, residual)
        if residual == 'relevance':
            r = r - ident
        return r.reshape(b, v, *r.shape[1:])

    def layout(self, inputs: Tensor) -> Dict[str, Any]:
        """Token layout read from the model: ``mode``, ``t, h, w`` grid."""
        bb = self.model.backbone
        if self.backbone_type == 'TimeSformer':
            h, w = self.adapter.patch_grid(inputs)
            return dict(mode=bb.attention_type, t=int(bb.num_frames), h=h,
                        w=w, cls=True)
        t, h, w = self.adapter.token_grid(inputs)
        return dict(mode='mean_pooled' if getattr(bb, 'fc_norm', None)
                    is not None else 'first_token', t=t, h=h, w=w, cls=False)

    def propagate(self, calls: Sequence[Tuple[str, Tensor]], inputs: Tensor,
                  residual: str) -> Tensor:
        """Row of the product of operators, read as ``[B, V, t, h, w]``.

        ``residual='rollout'``: each operator is ``rownorm(A + I)``;
        ``'relevance'``: each is ``I + A`` (Chefer's ``R <- R + A R``).
        """
        b, v, _, _, _ = self.adapter.input_shape(inputs)
        lay = self.layout(inputs)
        t, h, w = lay['t'], lay['h'], lay['w']
        p = h * w
        bv = b * v
        first = calls[0][1]
        dev, dt = first.device, first.dtype
        if lay['mode'] == 'space_only':
            r = torch.zeros(bv * t, 1 + p, device=dev, dtype=dt)
            r[:, 0] = 1.0 / t
        elif lay['cls']:
            r = torch.zeros(bv, 1 + p * t, device=dev, dtype=dt)
            r[:, 0] = 1.0
        elif lay['mode'] == 'mean_pooled':
            r = torch.full((bv, t * p), 1.0 / (t * p), device=dev, dtype=dt)
        else:  # the head reads the first token
            r = torch.zeros(bv, t * p, device=dev, dtype=dt)
            r[:, 0] = 1.0
        start = r.clone()
        for kind, mat in reversed(list(calls)):
            moved = apply_operator(r, kind, mat, p, t)
            if residual == 'rollout':
                if kind == 'full':  # rownorm(A + I) for any A
                    norm = mat.sum(-1) + 1  # [M, L] row sums of A + I
                    r_scaled = r / norm
                    r = apply_operator(r_scaled, kind, mat, p, t) + r_scaled
                else:  # A row-stochastic: rownorm(A + I) = (A + I) / 2
                    r = (moved + r) / 2
            else:
                r = r + moved
        if lay['mode'] == 'space_only':
            grid = r[:, 1:].reshape(bv, t, p)
        elif lay['cls']:
            grid = r[:, 1:].reshape(bv, p, t).transpose(1, 2)
        else:
            if residual == 'relevance':
                r = r - start  # column mean of R - I
            grid = r
        return grid.reshape(b, v, t, h, w)

    def _finish(self, grid: Tensor, inputs: Tensor, scores: Tensor,
                targets: Tensor) -> Attribution:
        maps = self.adapter.upsample(grid.float(), 'backbone', inputs)
        return Attribution(maps, scores.detach(), targets,
                           layer_maps={'attention': maps},
                           extras={'token_map': grid.detach()},
                           probs=getattr(self, '_probs', None))


@EXPLAINERS.register_module()
class AttentionRollout(_AttentionExplainer):
    """Attention rollout: ``C = prod_b rownorm(mean_heads A_b + I)``, map =
    the cls token's row of ``C`` over patch tokens (VideoMAE, no cls: the
    mean over token rows, as its head mean-pools). One forward pass, no
    gradients, not class specific (the target only selects the score).
    Memory is counted at a kept graph per view (an upper bound: the
    head-averaged attention of every call is kept)."""

    def settings(self) -> Dict[str, Any]:
        return dict(head_fusion='mean', residual='rownorm(A + I)')

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        with record_attention(self.model.backbone, structural=True,
                              head_reduce=lambda p: p.float().mean(1)
                              ) as calls, torch.no_grad():
            scores, probs = self.adapter.scores_and_probs(inputs)
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(self.adapter, probs))
            self._probs = probs.detach()
            if self.windowed:
                grid = self.windowed_grid(calls, inputs, 'rollout')
            elif self.pooled:
                grid = self.pooled_grid(calls, inputs, 'rollout')
            elif self.local:
                grid = self.local_grid(calls, inputs, 'rollout')
            elif self.decoder:
                grid = self.decoder_grid(calls, inputs, 'rollout')
            else:
                ops = [(c.kind, c.probs) for c in calls]
                grid = self.propagate(ops, inputs, 'rollout')
        return self._finish(grid, inputs, scores, targets)


def _head_fused_relevance(objective: Tensor, attn: Sequence[AttentionCall]
                          ) -> Dict[int, Tensor]:
    """``{id(call): mean_h ReLU(dS/dA * A)}`` of every recorded call, from
    one backward of ``objective``.

    Each call's gradient is fused into its head mean by a tensor hook the
    moment autograd has it, so one call's per-head gradient ``[M, h, L, S]``
    lives at a time (not all of them at once: for global attention that is
    the size of the recorded attention again). The backward is taken with
    respect to the first recorded attention only (every later call lies
    between it and the score, so autograd computes their gradients on the
    way and the hooks see them); calls the score does not reach get zeros.
    """
    weighted: Dict[int, Tensor] = {}
    handles = []

    def fuse(call: AttentionCall):
        def hook(grad: Tensor) -> None:
            a = call.probs.detach().float()
            weighted[id(call)] = F.relu(grad.float() * a).mean(1)
        return hook

    try:
        live = [c for c in attn if c.probs.requires_grad]
        for call in live:
            handles.append(call.probs.register_hook(fuse(call)))
        if objective.requires_grad and live:
            torch.autograd.grad(objective, [live[0].probs],
                                allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    for call in attn:
        if id(call) not in weighted:
            weighted[id(call)] = torch.zeros_like(call.probs.detach().float()
                                                  .mean(1))
        call.probs = None  # the per-head copy is no longer needed
    return weighted


@EXPLAINERS.register_module()
class AttentionRelevance(_AttentionExplainer):
    """Gradient-weighted attention relevance (Chefer et al. 2021):
    ``R = I``; per attention call ``A_bar = mean_h ReLU(dS_c/dA * A)``,
    ``R <- R + A_bar R``; map = ``R[cls, patches]`` (VideoMAE: the column
    mean of ``R - I``). TimeSformer's divided attention contributes a
    temporal then a spatial operator per block. One forward + one backward
    from the score to the first attention (the graph starts there).
    """

    def settings(self) -> Dict[str, Any]:
        return dict(head_fusion='mean of ReLU(grad * A)')

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]):
        if self.windowed and any(getattr(m, 'with_cp', False) for m in
                                 self.model.backbone.modules()):
            raise UnsupportedModelError(
                f'{self.name} needs the recorded attention in the autograd '
                'graph; with_cp (checkpointing) recomputes it')
        # the graph starts at the first attention (parameters frozen, the
        # input without grad, the first attention a leaf): the layers
        # below keep no activations for the backward
        with record_attention(self.model.backbone,
                              structural=self.windowed or self.local or
                              self.decoder, leaves=True) as calls, \
                frozen_parameters(self.model), torch.enable_grad():
            scores, probs = self.adapter.scores_and_probs(inputs.detach())
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(self.adapter, probs))
            self._probs = probs.detach()
            objective = scores.gather(1, targets.view(-1, 1)).sum()
            attn = [c for c in calls if c.probs is not None]
            weighted = _head_fused_relevance(objective, attn)
        with torch.no_grad():
            if self.windowed or self.local or self.decoder:
                reduced = [AttentionCall(c.kind, weighted.get(id(c)), c.meta)
                           for c in calls]
                grid = (self.windowed_grid if self.windowed else
                        self.local_grid if self.local else
                        self.decoder_grid)(reduced, inputs, 'relevance')
            elif self.pooled:
                reduced = [AttentionCall(c.kind, weighted[id(c)], c.meta)
                           for c in calls]
                grid = self.pooled_grid(reduced, inputs, 'relevance')
            else:
                ops = [(c.kind, weighted[id(c)]) for c in calls]
                grid = self.propagate(ops, inputs, 'relevance')
        return self._finish(grid, inputs, scores, targets)


__all__ = ['AttentionCall', 'AttentionRelevance', 'AttentionRollout',
           'DECODER_BACKBONES', 'LOCAL_BACKBONES', 'POOLED_BACKBONES',
           'SUPPORTED_BACKBONES',
           'WINDOWED_BACKBONES',
           'apply_operator',
           'record_attention']
