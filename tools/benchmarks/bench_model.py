"""The model and clip the speed benchmarks share: MMAction2's I3D-R50
config with random weights (no download) and a seeded random uint8 clip."""
from typing import Tuple

CONFIG = ('mmaction::recognition/i3d/'
          'i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb.py')


def random_i3d_and_clip(frames: int, size: int) -> Tuple[object, dict]:
    """``(model, data)``: the I3D-R50 recognizer on CPU, and a data batch
    ``dict(inputs=[uint8 [1, 3, frames, size, size]], data_samples=[...])``
    as the toolbox's dataloader yields it."""
    import torch
    import mmxai  # noqa: F401
    from mmaction.structures import ActionDataSample
    from mmxai.apis import init_recognizer
    model = init_recognizer(CONFIG, None, device='cpu')
    g = torch.Generator().manual_seed(0)
    data = dict(inputs=[torch.randint(0, 256, (1, 3, frames, size, size),
                                      generator=g, dtype=torch.uint8)],
                data_samples=[ActionDataSample()])
    return model, data
