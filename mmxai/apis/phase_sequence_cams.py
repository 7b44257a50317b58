"""Spatial maps on the frames that matter to a phase at time t.

For an explained time t and one of its most important frames s, the frame
CNN runs again on frame s with gradients; its pooled features replace grid
frame s in the cached context, the head scores the target at t, and the
map is ``relu(sum_c A_c * dscore/dA_c)`` on the CNN's last feature map
``A [C, h, w]`` (gradient x activation summed over channels: HiResCAM's
rule, which stays faithful for the grid-pooling head, where Grad-CAM's
frame-averaged channel weights do not; docs/surgical.md), resized to the
model's input frame.
"""
from typing import Any, List

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..explainers.sequence_attribution import context_scores
from .long_video import WindowInputs, WindowPlan

__all__ = ['frame_cams']


def frame_cams(model, cfg, stream, res: Any, seq: torch.Tensor, span: int,
               k: int, method: str, score: str, interval: int
               ) -> List[List[tuple]]:
    """Per explained time, ``[(grid frame, frame uint8 [H, W, 3], map
    [H, W] in [0, 1], importance)]`` for its top ``k`` frames by
    ``method``."""
    plan = WindowPlan([0], interval, np.zeros(1, np.int64), 'segments',
                      None, stream.fps, stream.num_frames, interval, 0,
                      stream.num_frames, 'one')
    inputs = WindowInputs(cfg, plan, stream.shape, stream.video)
    head = model.cls_head
    out = []
    for i, t in enumerate(res.times):
        t = int(t)
        a = int(res.context_start[i])
        c = int(res.targets[i])
        row = res.importance[method][i]
        maps = []
        for s in res.top_frames(i, method, k):
            s = int(s)
            frame_no = int(res.frame_inds[s])
            got = stream.get([frame_no])
            sample = inputs.sample(got, np.array([frame_no]))
            data = model.data_preprocessor(
                dict(inputs=[sample['inputs']],
                     data_samples=[sample['data_samples']]), False)
            with torch.enable_grad():
                feats, kw = model.extract_feat(data['inputs'],
                                               test_mode=True)
                feats = feats.detach().requires_grad_(True)
                pooled = head.pool(feats, kw['num_segs'])[0]  # [D, 1]
                ctx = seq[:, a:t + 1].clone()
                ctx = torch.cat([ctx[:, :s - a], pooled,
                                 ctx[:, s - a + 1:]], 1)
                y = context_scores(head, ctx[None], c, score).sum()
                g, = torch.autograd.grad(y, feats)
            want = res.records[i].get('score')
            y = float(y.detach())
            if want is not None and abs(y - want) > 1e-3 * max(
                    1.0, abs(want)):
                raise ConfigError(
                    f'CAM of frame {s}: the frame CNN run again gives the '
                    f'score {y:.4f} at t, the cached features '
                    f'{want:.4f}; the cache does not match this model '
                    '(refresh_features=True)')
            cam = F.relu((g * feats).sum(1, keepdim=True)).detach()
            img = sample['inputs'][0].permute(1, 2, 0).cpu().numpy()
            cam = F.interpolate(cam, size=img.shape[:2], mode='bilinear',
                                align_corners=False)[0, 0].cpu().numpy()
            top = cam.max()
            maps.append((s, np.ascontiguousarray(img.astype(np.uint8)),
                         (cam / top if top > 0 else cam).astype(np.float32),
                         float(row[s])))
        out.append(maps)
    return out
