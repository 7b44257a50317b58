"""``ConvStemSwinTransformer3D``: MMAction2's Video Swin with a convolutional
token embedding in place of the linear patch projection.

The class is MMAction2's ``SwinTransformer3D`` (same blocks, windows, shifts,
patch merging, norms and state-dict keys) except ``patch_embed.proj``,
which becomes a three-layer stem (``C1, C2 = stem_channels``, patch size
``(pt, ph, pw)``, ``ph`` and ``pw`` divisible by 4)::

    Conv3d(3, C1, 3x5x5, stride 1x2x2, pad 1x2x2) - ReLU
    Conv3d(C1, C2, 3x3x3, stride pt x 2 x 2, pad 1) - ReLU
    Conv3d(C2, embed_dims, 1 x ph/4 x pw/4, stride 1 x ph/4 x pw/4)

On an input ``[B, 3, T, H, W]`` (``PatchEmbed3D`` first pads it to
multiples of the patch size, as for the linear projection) the stem gives
the linear patchify's token grid ``[B, embed_dims, T/pt, H/ph, W/pw]``
(e.g. 16x64x64 clips, patch 2x8x8 -> 8x8x8 tokens), then the patch norm and
the Swin stages as usual. Why: the direction of a small moving object
needs local motion energy (temporal difference times spatial gradient at
each place), which shared convolutions compute everywhere and a linear
projection of a whole patch does not (``docs/transformer_cams.md``).

The registered name is ``ConvStemSwinTransformer3D`` but the class keeps
the Python name ``SwinTransformer3D``: mmxai's adapters and attention
explainers (``mmxai/explainers/attention_windows.py``) recognise Video Swin
by that name and read windows, shifts and merges from the blocks at run
time, so rollout and relevance apply unchanged above the stem. The stem
advertises ``kernel_size = stride = patch_size`` and zero ``padding``
(the grid arithmetic of the patchify it replaces).
"""
from typing import Sequence

from mmaction.models.backbones.swin import \
    SwinTransformer3D as _SwinTransformer3D
from mmaction.registry import MODELS
from torch import nn

from ..errors import ConfigError

__all__ = ['ConvStemSwinTransformer3D', 'swin_conv_stem']


def swin_conv_stem(in_channels: int, embed_dims: int,
                   patch_size: Sequence[int],
                   stem_channels: Sequence[int] = (16, 32)) -> nn.Sequential:
    """The stem of the module docstring: ``[B, in, T, H, W]`` ->
    ``[B, embed_dims, T/pt, H/ph, W/pw]`` for sizes divisible by the
    patch."""
    pt, ph, pw = (int(v) for v in patch_size)
    if ph % 4 or pw % 4 or ph < 4 or pw < 4:
        raise ConfigError(f'conv stem needs spatial patch sizes divisible '
                          f'by 4, got {tuple(patch_size)}')
    c1, c2 = (int(v) for v in stem_channels)
    stem = nn.Sequential(
        nn.Conv3d(in_channels, c1, (3, 5, 5), (1, 2, 2), (1, 2, 2)),
        nn.ReLU(),
        nn.Conv3d(c1, c2, 3, (pt, 2, 2), 1),
        nn.ReLU(),
        nn.Conv3d(c2, embed_dims, (1, ph // 4, pw // 4),
                  (1, ph // 4, pw // 4)))
    stem.kernel_size = stem.stride = (pt, ph, pw)
    stem.padding = (0, 0, 0)
    return stem


class SwinTransformer3D(_SwinTransformer3D):
    """Video Swin with :func:`swin_conv_stem` as ``patch_embed.proj``.

    Args:
        *args, **kwargs: those of MMAction2's ``SwinTransformer3D``
            (``patch_size`` must be a 3-sequence with spatial sizes
            divisible by 4).
        stem_channels (Sequence[int]): the stem's two hidden widths.
    """

    def __init__(self, *args, stem_channels: Sequence[int] = (16, 32),
                 **kwargs) -> None:
        patch = kwargs.get('patch_size', (2, 4, 4))
        if isinstance(patch, int) or len(patch) != 3:
            raise ConfigError(f'ConvStemSwinTransformer3D needs a 3-sequence '
                              f'patch_size, got {patch!r}')
        super().__init__(*args, **kwargs)
        self.patch_embed.proj = swin_conv_stem(
            self.patch_embed.in_channels, self.embed_dims,
            self.patch_embed.patch_size, stem_channels)


SwinTransformer3D.__qualname__ = 'SwinTransformer3D'
ConvStemSwinTransformer3D = SwinTransformer3D
MODELS.register_module('ConvStemSwinTransformer3D', module=SwinTransformer3D)
