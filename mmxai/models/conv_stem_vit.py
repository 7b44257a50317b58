"""``ConvStemVisionTransformer``: MMAction2's VideoMAE ``VisionTransformer``
with a small convolutional stem in place of its linear tubelet embedding.

The stem (``patch_embed.projection``, for ``tubelet_size = s_t``,
``patch_size = p``, ``stem_channels = (c1, c2)``, ``embed_dims = D``)::

    Conv3d(3, c1, k=3x5x5, stride=1x2x2, pad=1x2x2) - ReLU
    Conv3d(c1, c2, k=3x3x3, stride=s_t x2x2, pad=1)  - ReLU
    Conv3d(c2, D, k=1x(p/4)x(p/4), stride=1x(p/4)x(p/4))

Its output is the linear embedding's token grid ``[B, D, T/s_t, H/p, W/p]``
(exact for ``T`` divisible by ``s_t`` and ``H, W`` by ``p``): with the
benchmark's 16x64x64 clips, ``s_t = 2``, ``p = 16``, an 8x4x4 = 128-token
grid in ``(t h w)`` order. Token ``(t, i, j)`` sees input frames
``[s_t t - 2, s_t t + 2]`` and rows / columns ``[i p - 4, (i + 1) p]``
(clipped at the borders): its tubelet, 4 px more above and to the left,
1 px below and to the right, 2 frames either side (the linear embedding's
token sees exactly its tubelet), so a token map upsampled onto the tubelets
is off by at most a few pixels. Everything above the stem (sinusoidal or learnt
positions, the blocks with global joint attention, the norms, mean pooling)
is the VideoMAE ViT's, and so are the state-dict keys except the stem's
(``patch_embed.projection.{0,2,4}`` instead of ``patch_embed.projection``).

Why a stem: the synthetic benchmark's class is the direction of a small disc
moving 2-6 px per frame. A linear 16x16 patch projection must learn that
motion energy separately for every position inside a patch, and the ViT
stayed at chance on 2 CPU cores; the stem computes it with shared local
filters, and the model learns the task (``docs/transformer_cams.md``).

Registered in MMAction2's ``MODELS`` as ``ConvStemVisionTransformer`` (a
config uses ``backbone=dict(type='ConvStemVisionTransformer', ...)`` with
the ``VisionTransformer`` arguments plus ``stem_channels``). The Python class
keeps the name ``VisionTransformer``: mmxai's token adapter
(:class:`~mmxai.adapters.transformer.VideoMAEAdapter`) and its attention
methods pick a family by the backbone's class name, and above the stem this
*is* the VideoMAE ViT. The stem carries ``kernel_size = stride = (s_t, p,
p)`` and zero ``padding``, the grid arithmetic of the patchify it replaces,
which the adapter reads to lay out the tokens.
"""
from typing import Sequence, Tuple

from mmaction.models.backbones.vit_mae import \
    VisionTransformer as _VideoMAEViT
from mmaction.registry import MODELS
from torch import nn

from ..errors import ConfigError

__all__ = ['ConvStemVisionTransformer', 'conv_stem']


def conv_stem(embed_dims: int, tubelet_size: int, patch_size: int,
              in_channels: int = 3,
              stem_channels: Sequence[int] = (16, 32)) -> nn.Sequential:
    """The convolutional token embedding (see the module docstring):
    ``[B, in_channels, T, H, W] -> [B, embed_dims, T/tubelet, H/p, W/p]``.

    It carries ``kernel_size = stride = (tubelet_size, patch_size,
    patch_size)`` and ``padding = (0, 0, 0)``: the output-grid arithmetic of
    the linear tubelet embedding it replaces, for mmxai's token adapters."""
    if patch_size % 4:
        raise ConfigError(f'ConvStemVisionTransformer: patch_size must be a '
                          f'multiple of 4 (the stem strides 2x2 twice), got '
                          f'{patch_size}')
    c1, c2 = (int(c) for c in stem_channels)
    q = patch_size // 4
    stem = nn.Sequential(
        nn.Conv3d(in_channels, c1, (3, 5, 5), (1, 2, 2), (1, 2, 2)),
        nn.ReLU(),
        nn.Conv3d(c1, c2, 3, (tubelet_size, 2, 2), 1),
        nn.ReLU(),
        nn.Conv3d(c2, embed_dims, (1, q, q), (1, q, q)))
    stem.kernel_size = stem.stride = (tubelet_size, patch_size, patch_size)
    stem.padding = (0, 0, 0)
    return stem


@MODELS.register_module()
class ConvStemVisionTransformer(_VideoMAEViT):
    """VideoMAE ``VisionTransformer`` with :func:`conv_stem` as its
    ``patch_embed.projection`` (module docstring: layers, token grid).

    Args:
        stem_channels: channels of the stem's first two convolutions.
        in_channels, tubelet_size, patch_size, embed_dims, **kwargs: as
            MMAction2's ``VisionTransformer``.
    """

    def __init__(self, *args, stem_channels: Tuple[int, int] = (16, 32),
                 **kwargs) -> None:
        super().__init__(*args, **kwargs)
        proj = self.patch_embed.projection
        self.stem_channels = tuple(int(c) for c in stem_channels)
        self.patch_embed.projection = conv_stem(
            self.embed_dims, int(proj.stride[0]), self.patch_size,
            in_channels=proj.in_channels, stem_channels=self.stem_channels)


# The family name mmxai's adapters and attention methods look for (above the
# stem this is the VideoMAE ViT); the registry key stays
# 'ConvStemVisionTransformer', so MMAction2's own VisionTransformer is not
# shadowed.
ConvStemVisionTransformer.__name__ = 'VisionTransformer'
ConvStemVisionTransformer.__qualname__ = 'VisionTransformer'
