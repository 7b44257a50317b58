"""Video transformers: tokens -> ``[B, V, C, t, h, w]`` grids, layouts read
from the model (patch/tubelet sizes, frames, cls tokens), never hard-coded.

Families: TimeSformer (cls + patch-major ``(p t)`` tokens, or per-frame
tokens for ``space_only``), VideoMAE ViT (no cls, tubelets ``(t h w)``),
Swin3D (channel-last stages), MViT (cls + ``(t h w)``, stage-wise
resolution) and UniFormerV2 (CLIP-style ``[1 + h*w, B*t, C]`` per frame).
Grad-CAM needs a layer whose patch tokens receive gradient: with a head on
the cls token, that is the input of the last block (the tokens the last
attention mixes into the cls token), not the final norm.
"""
import math
from typing import List, Tuple

from torch import Tensor, nn

from ..errors import UnsupportedModelError
from ..registry import ADAPTERS
from .base import Recognizer3DAdapter, _first_tensor


def _pair(v) -> Tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


class _TokenAdapter(Recognizer3DAdapter):
    """Shared helpers: recognizer check by backbone class name."""
    backbone_type = ''
    priority = 10

    @classmethod
    def matches(cls, model: nn.Module) -> bool:
        from mmaction.models import Recognizer3D
        return isinstance(model, Recognizer3D) and type(
            getattr(model, 'backbone', None)).__name__ == cls.backbone_type

    @property
    def backbone(self) -> nn.Module:
        return self.model.backbone

    def _grid_error(self, name: str, act: Tensor) -> UnsupportedModelError:
        return UnsupportedModelError(
            f"layer '{name}' gives {tuple(act.shape)}, which mmxai cannot lay "
            f'out as tokens of {type(self.backbone).__name__}; choose one of '
            f'{", ".join(self.default_target_layers())}')

    def embed_grid(self, inputs: Tensor) -> Tuple[int, int, int]:
        """``(t, h, w)`` of a Conv3d patch embedding's output grid."""
        proj = self.backbone.patch_embed.projection
        _, _, tt, hh, ww = self.input_shape(inputs)
        k, s, p = proj.kernel_size, proj.stride, proj.padding
        return tuple(_conv_out(n, k[i], s[i], p[i])
                     for i, n in enumerate((tt, hh, ww)))


@ADAPTERS.register_module()
class TimeSformerAdapter(_TokenAdapter):
    """TimeSformer: ``[B*V, 1 + P*T, C]`` tokens in patch-major ``(p t)``
    order (divided/joint attention) or ``[B*V*T, (1 +) P, C]`` per frame
    (``space_only``, patch embedding). ``P = h*w`` from ``patch_embed``."""
    family = 'timesformer'
    backbone_type = 'TimeSformer'

    def patch_grid(self, inputs: Tensor) -> Tuple[int, int]:
        """``(h, w)`` patches of an input frame (from the projection)."""
        proj = self.backbone.patch_embed.projection
        _, _, _, hh, ww = self.input_shape(inputs)
        kh, kw = _pair(proj.kernel_size)
        sh, sw = _pair(proj.stride)
        ph, pw = _pair(proj.padding)
        return _conv_out(hh, kh, sh, ph), _conv_out(ww, kw, sw, pw)

    def default_target_layers(self) -> List[str]:
        """Tokens entering the last block (the last block's own output only
        feeds the cls token to the head)."""
        n = len(self.backbone.transformer_layers.layers)
        if n < 2:
            return ['backbone.patch_embed']
        return [f'backbone.transformer_layers.layers.{n - 2}']

    def activation_grid(self, name: str, act, inputs: Tensor) -> Tensor:
        b, v, _, _, _ = self.input_shape(inputs)
        act = _first_tensor(name, act)
        t = int(self.backbone.num_frames)
        h, w = self.patch_grid(inputs)
        p = h * w
        if act.dim() == 5 and act.shape[0] == b * v:
            return act.view(b, v, *act.shape[1:])
        if act.dim() != 3:
            raise self._grid_error(name, act)
        n, length, c = act.shape
        if n == b * v and length in (p * t, p * t + 1):  # cls + (p t)
            tokens = act[:, length - p * t:].reshape(b, v, p, t, c)
            grid = tokens.permute(0, 1, 4, 3, 2)
        elif n == b * v * t and length in (p, p + 1):  # per frame
            tokens = act[:, length - p:].reshape(b, v, t, p, c)
            grid = tokens.permute(0, 1, 4, 2, 3)
        else:
            raise self._grid_error(name, act)
        return grid.reshape(b, v, c, t, h, w)


@ADAPTERS.register_module()
class VideoMAEAdapter(_TokenAdapter):
    """VideoMAE / VideoMAE V2 ``VisionTransformer``: ``[B*V, t*h*w, C]``
    tokens, no cls token, ``t = T / tubelet`` (the projection's temporal
    stride), ordered ``(t h w)`` as the Conv3d patch embedding flattens."""
    family = 'videomae'
    backbone_type = 'VisionTransformer'

    def token_grid(self, inputs: Tensor) -> Tuple[int, int, int]:
        return self.embed_grid(inputs)

    def default_target_layers(self) -> List[str]:
        """The last block when the head mean-pools the tokens (every token
        gets gradient); else the tokens entering it."""
        n = len(self.backbone.blocks)
        pooled = getattr(self.backbone, 'fc_norm', None) is not None
        if pooled or n < 2:
            return [f'backbone.blocks.{n - 1}']
        return [f'backbone.blocks.{n - 2}']

    def activation_grid(self, name: str, act, inputs: Tensor) -> Tensor:
        b, v, _, _, _ = self.input_shape(inputs)
        act = _first_tensor(name, act)
        t, h, w = self.token_grid(inputs)
        if act.dim() == 5 and act.shape[0] == b * v:
            return act.view(b, v, *act.shape[1:])
        if act.dim() == 3 and act.shape[0] == b * v and \
                act.shape[1] == t * h * w:
            c = act.shape[2]
            return act.reshape(b, v, t, h, w, c).permute(0, 1, 5, 2, 3, 4)
        raise self._grid_error(name, act)


@ADAPTERS.register_module()
class Swin3DAdapter(_TokenAdapter):
    """Video Swin: the backbone's output is ``[B*V, C, t, h, w]``; its
    stages (``backbone.layers.i``) and their norms are channel-last
    ``[B*V, t, h, w, C]``."""
    family = 'swin'
    backbone_type = 'SwinTransformer3D'

    def default_target_layers(self) -> List[str]:
        return ['backbone']

    def activation_grid(self, name: str, act, inputs: Tensor) -> Tensor:
        b, v, _, _, _ = self.input_shape(inputs)
        act = _first_tensor(name, act)
        if act.dim() != 5 or act.shape[0] != b * v:
            raise self._grid_error(name, act)
        dotted = name.replace('/', '.')
        channel_last = dotted.startswith(('backbone.layers.',
                                          'backbone.norm'))
        if channel_last:
            act = act.permute(0, 4, 1, 2, 3)
        return act.reshape(b, v, *act.shape[1:])


@ADAPTERS.register_module()
class MViTAdapter(_TokenAdapter):
    """MViT(v2): blocks output ``([B*V, 1 + t*h*w, C], (t, h, w))``; the
    resolution of a stage is found from the token count and the patch
    embedding's grid (stages pool space by powers of two)."""
    family = 'mvit'
    backbone_type = 'MViT'

    def patch_grid(self, inputs: Tensor) -> Tuple[int, int, int]:
        return self.embed_grid(inputs)

    def default_target_layers(self) -> List[str]:
        """Tokens entering the last block (the head reads its cls token)."""
        n = len(self.backbone.blocks)
        return [f'backbone.blocks.{max(n - 2, 0)}']

    def stage_grid(self, tokens: int, inputs: Tensor) -> Tuple[int, int, int]:
        t0, h0, w0 = self.patch_grid(inputs)
        for ts in (1, 2, 4, 8):
            for s in (1, 2, 4, 8, 16, 32, 64):
                t, h, w = math.ceil(t0 / ts), math.ceil(h0 / s), \
                    math.ceil(w0 / s)
                if t * h * w == tokens:
                    return t, h, w
        raise UnsupportedModelError(
            f'cannot lay out {tokens} MViT tokens on a grid of '
            f'{(t0, h0, w0)} patches')

    def activation_grid(self, name: str, act, inputs: Tensor) -> Tensor:
        b, v, _, _, _ = self.input_shape(inputs)
        if isinstance(act, (tuple, list)) and len(act) == 2 and \
                isinstance(act[0], (tuple, list)):  # backbone: [patch, cls]
            act = act[0]
        act = _first_tensor(name, act)
        if act.dim() == 5 and act.shape[0] == b * v:
            return act.view(b, v, *act.shape[1:])
        if act.dim() != 3 or act.shape[0] != b * v:
            raise self._grid_error(name, act)
        extra = 1 if getattr(self.backbone, 'with_cls_token', True) else 0
        t, h, w = self.stage_grid(act.shape[1] - extra, inputs)
        c = act.shape[2]
        tokens = act[:, extra:].reshape(b, v, t, h, w, c)
        return tokens.permute(0, 1, 5, 2, 3, 4)


@ADAPTERS.register_module()
class UniFormerV2Adapter(_TokenAdapter):
    """UniFormerV2: CLIP-style blocks ``[1 + h*w, B*V*t, C]`` (sequence
    first, one cls token per frame); the global decoder reads the blocks of
    ``return_list``, so their patch tokens receive gradient."""
    family = 'uniformerv2'
    backbone_type = 'UniFormerV2'

    def patch_grid(self, inputs: Tensor) -> Tuple[int, int]:
        conv = self.backbone.conv1
        _, _, _, hh, ww = self.input_shape(inputs)
        k, s, p = conv.kernel_size, conv.stride, conv.padding
        return _conv_out(hh, k[1], s[1], p[1]), _conv_out(ww, k[2], s[2],
                                                          p[2])

    def default_target_layers(self) -> List[str]:
        last = max(self.backbone.transformer.return_list)
        return [f'backbone.transformer.resblocks.{last}']

    def activation_grid(self, name: str, act, inputs: Tensor) -> Tensor:
        b, v, _, _, _ = self.input_shape(inputs)
        act = _first_tensor(name, act)
        h, w = self.patch_grid(inputs)
        if act.dim() == 5 and act.shape[0] == b * v:
            return act.view(b, v, *act.shape[1:])
        if act.dim() != 3 or act.shape[0] not in (h * w, h * w + 1) or \
                act.shape[1] % (b * v):
            raise self._grid_error(name, act)
        length, n, c = act.shape
        t = n // (b * v)
        tokens = act[length - h * w:].reshape(h, w, b, v, t, c)
        return tokens.permute(2, 3, 5, 4, 0, 1)


__all__ = ['TimeSformerAdapter', 'VideoMAEAdapter', 'Swin3DAdapter',
           'MViTAdapter', 'UniFormerV2Adapter']
