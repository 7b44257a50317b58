"""The Class Feature Pyramids explainer (:class:`ClassFeaturePyramid`)."""
import time
from typing import Any, Dict, Optional, Sequence, Type, Union

import torch
from torch import Tensor, nn

from ...errors import MMXAIError, UnsupportedModelError
from ...registry import EXPLAINERS
from ..attribution import Attribution
from ..base import BaseExplainer
from ..targets import TargetSpec, resolve_targets
from .recorder import Recorder
from .walker import Walker

#: Thresholds the paper reports per network (``theta='i3d'`` picks one).
PAPER_THETAS = {'mfnet': 0.6, 'i3d': 0.65, 'r50_3d': 0.55, 'r101_3d': 0.6,
                'r152_3d': 0.6, 'resnext101_3d': 0.6}


def _classifier(model: nn.Module):
    """The head's first linear layer and a function giving the effective
    ``[K, C]`` class weights on its input (X3D's two layers: ``W2 @ W1``)."""
    head = getattr(model, 'cls_head', None)
    linears = [m for m in head.modules() if isinstance(m, nn.Linear)] \
        if head is not None else []
    if not linears:
        raise UnsupportedModelError(
            f'Class Feature Pyramids need a linear classifier in the head; '
            f'{type(head).__name__} has none')
    fc = getattr(head, 'fc_cls', None)
    if isinstance(fc, nn.Linear):
        return fc, lambda: fc.weight.detach()

    def chained():  # fc1 -> (non-linearity) -> fc2: linearised
        w = linears[0].weight.detach()
        for lin in linears[1:]:
            if lin.in_features != w.shape[0]:
                raise UnsupportedModelError(
                    f'cannot chain the linear layers of {type(head).__name__}')
            w = lin.weight.detach() @ w
        return w
    return linears[0], chained


@EXPLAINERS.register_module()
class ClassFeaturePyramid(BaseExplainer):
    """Class Feature Pyramids: the class's kernel hierarchy and a tube per node.

    Graph: the root is the class; its children (level 1) are the seed kernels
    ``k`` with min-max normalised classifier weight ``W[c, k] >= theta``,
    identified as the convolution kernel (output channel) that produces head
    input channel ``k``. A node ``(layer l, kernel i)`` gets as children the
    input channels ``j`` of layer ``l`` (in ``i``'s group) with
    ``p_j = minmax_j(kappa_j * alpha_j) >= theta``, ``kappa_j`` the kernel's
    weights to channel ``j`` averaged over its spatio-temporal extent and
    ``alpha_j`` the global average of the input channel (per sample, over views
    too); each child is named by the kernel of the convolution that produced
    that channel. ``depth`` back-steps: nodes of levels ``1..depth`` are
    expanded, level ``depth + 1`` nodes are leaves. The graph is a DAG: a
    kernel reached from several parents lists its children at its first
    occurrence only (later ones carry ``ref: true``).

    Tube of a node: the unweighted sum of its children's activation maps,
    upsampled to the input (root: the seed channels of the head input).
    ``raw_maps`` is the root's tube.

    Args:
        model: the recognizer.
        theta: threshold in [0, 1], or a key of :data:`PAPER_THETAS`.
        depth: number of back-steps ``D`` (>= 0).
        max_children: keep at most this many (strongest) children per node
            (default: all above ``theta``, as in the paper).
        tubes_per_level: tubes are kept for this many strongest nodes per
            level and sample (memory bound); the root's always.
    """
    #: the back-step implementation (tests swap in the per-kernel
    #: reference, ``mmxai.testing.cfp_reference.PerKernelWalker``)
    _walker_cls: Type[Walker] = Walker
    #: the graph starts at one class's classifier weights
    callable_targets = False

    def __init__(self, model: nn.Module, theta: Union[float, str] = 0.6,
                 depth: int = 3, max_children: Optional[int] = None,
                 tubes_per_level: int = 6, **kwargs):
        super().__init__(model, **kwargs)
        if isinstance(theta, str):
            if theta.lower() not in PAPER_THETAS:
                try:
                    theta = float(theta)
                except ValueError:
                    raise MMXAIError(
                        f"unknown theta '{theta}': give a number in [0, 1] "
                        f'or one of {", ".join(sorted(PAPER_THETAS))}') \
                        from None
            else:
                theta = PAPER_THETAS[theta.lower()]
        if not 0.0 <= float(theta) <= 1.0:
            raise MMXAIError(f'theta must be in [0, 1], got {theta}')
        if int(depth) < 0:
            raise MMXAIError(f'depth must be >= 0, got {depth}')
        if max_children is not None and int(max_children) < 1:
            raise MMXAIError(f'max_children must be >= 1, got {max_children}')
        self.theta = float(theta)
        self.depth = int(depth)
        self.max_children = None if max_children is None else int(
            max_children)
        self.tubes_per_level = int(tubes_per_level)
        self.classifier, self.class_weights_fn = _classifier(self.model)
        self.last_timing: Dict[str, float] = {}

    def settings(self) -> Dict[str, Any]:
        return dict(theta=self.theta, depth=self.depth,
                    max_children=self.max_children,
                    tubes_per_level=self.tubes_per_level)

    # ------------------------------------------------------------ forward
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        adapter = self.adapter
        rec = Recorder(self.model, self.classifier)
        try:
            with torch.enable_grad():
                x = inputs.detach().requires_grad_(True)
                scores = adapter.scores(x)
        finally:
            rec.remove()
        targets = resolve_targets(target, scores, data_samples)
        if not rec.fc_in or not rec.head_in:
            raise UnsupportedModelError(
                'the classifier was not run by the forward pass')
        start, cpu = time.perf_counter(), time.process_time()
        walker = self._walker_cls(
            rec, inputs, adapter, self.class_weights_fn(), theta=self.theta,
            depth=self.depth, max_children=self.max_children,
            tubes_per_level=self.tubes_per_level)
        graphs = [walker.graph(b, int(targets[b]))
                  for b in range(targets.shape[0])]
        backstep = time.perf_counter() - start
        backstep_cpu = time.process_time() - cpu
        start, cpu = time.perf_counter(), time.process_time()
        tubes, root = walker.tubes(graphs)
        self.last_timing = dict(backstep_s=backstep,
                                tubes_s=time.perf_counter() - start,
                                backstep_cpu_s=backstep_cpu,
                                tubes_cpu_s=time.process_time() - cpu)
        extras = {'cfp_graph': graphs, 'cfp_tubes': tubes,
                  'cfp_timing': dict(self.last_timing)}
        return Attribution(root, scores.detach(), targets, extras=extras)
