"""The Class Feature Pyramids explainer (:class:`ClassFeaturePyramid`)."""
import contextlib
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Type, Union

import torch
from torch import Tensor, nn

from ...errors import MMXAIError, UnsupportedModelError
from ...registry import EXPLAINERS
from ..attribution import Attribution
from ..base import BaseExplainer
from ..targets import TargetSpec, is_pred, pred_basis, resolve_targets
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
    #: views in passes of ``max_views_per_pass``, in two rounds
    #: (:meth:`_attribute_in_view_chunks`): ``alpha`` averages a channel
    #: over all views, so the graph needs every view before any tube
    views_separable = True
    #: round 1's per-pass channel sums and counts add up over the passes
    additive_extras = ('cfp_sums', 'cfp_counts')

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
        #: view passes: ``'alphas'`` or ``'tubes'`` and what they share
        self._round: Optional[str] = None
        self._shared: Dict[str, Any] = {}

    def settings(self) -> Dict[str, Any]:
        return dict(theta=self.theta, depth=self.depth,
                    max_children=self.max_children,
                    tubes_per_level=self.tubes_per_level)

    # ------------------------------------------------------------ forward
    def _recorded_forward(self, inputs: Tensor, target: TargetSpec,
                          data_samples: Optional[Sequence], graph: bool):
        """One forward with the :class:`Recorder` on: ``(rec, scores,
        targets)``; ``graph``: with the autograd graph the channel tracer
        reads (else activations only)."""
        rec = Recorder(self.model, self.classifier)
        try:
            if graph:
                with torch.enable_grad():
                    scores = self.adapter.scores(
                        inputs.detach().requires_grad_(True))
            else:
                with torch.no_grad():
                    scores = self.adapter.scores(inputs.detach())
        finally:
            rec.remove()
        targets = resolve_targets(target, scores, data_samples)
        if not rec.fc_in or not rec.head_in:
            raise UnsupportedModelError(
                'the classifier was not run by the forward pass')
        return rec, scores, targets

    def _walk(self, rec: Recorder, inputs: Tensor, targets: Tensor,
              alphas: Optional[Dict[str, Tensor]] = None):
        """The walker of ``rec`` (``alphas`` preset) and each sample's
        graph."""
        start, cpu = time.perf_counter(), time.process_time()
        walker = self._walker_cls(
            rec, inputs, self.adapter, self.class_weights_fn(),
            theta=self.theta, depth=self.depth,
            max_children=self.max_children,
            tubes_per_level=self.tubes_per_level)
        if alphas:
            walker._alphas.update(alphas)
        graphs = [walker.graph(b, int(targets[b]))
                  for b in range(targets.shape[0])]
        self._add_timing(backstep_s=time.perf_counter() - start,
                         backstep_cpu_s=time.process_time() - cpu)
        return walker, graphs

    def _tubes(self, walker: Walker, graphs: List[dict]):
        start, cpu = time.perf_counter(), time.process_time()
        out = walker.tubes(graphs)
        self._add_timing(tubes_s=time.perf_counter() - start,
                         tubes_cpu_s=time.process_time() - cpu)
        return out

    def _add_timing(self, **times: float) -> None:
        for k, v in times.items():
            self.last_timing[k] = self.last_timing.get(k, 0.0) + v

    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        if self._round == 'alphas':
            return self._alpha_pass(inputs, target, data_samples)
        if self._round == 'tubes':
            return self._tube_pass(inputs, target, data_samples)
        self.last_timing = {}
        rec, scores, targets = self._recorded_forward(inputs, target,
                                                      data_samples, True)
        walker, graphs = self._walk(rec, inputs, targets)
        tubes, root = self._tubes(walker, graphs)
        extras = {'cfp_graph': graphs, 'cfp_tubes': tubes,
                  'cfp_timing': dict(self.last_timing)}
        return Attribution(root, scores.detach(), targets, extras=extras)

    # ------------------------------------------------------- view passes
    def _attribute_in_view_chunks(self, video: Tensor, chunk: int,
                                  target: TargetSpec,
                                  data_samples: Optional[Sequence]
                                  ) -> Attribution:
        """Views in passes of at most ``chunk`` (the base class's loop, with
        its out-of-memory halving), in two rounds, equal to one pass:

        1. gradient-free forwards that keep only each conv input's
           per-sample channel sums (float64) and counts: ``alpha`` over
           all views (:func:`channel_sums`);
        2. per pass the recorded forward; the first also keeps its
           autograd graph, from which the channel producers are traced and
           each sample's graph is walked with the full ``alpha``; every
           pass then gives the tubes of its views (joined along V).

        The graph and kernels depend on the views only through ``alpha``;
        a tube is a per-view channel sum, so its views split. Costs two
        forwards per view (one pass: one)."""
        if is_pred(target):  # (the base class resolves 'pred' before)
            scores, probs = self._view_scores(video)
            target = resolve_targets(target, scores, data_samples,
                                     pred_basis(self.adapter, probs))
        self.last_timing = {}
        self._shared = {}
        try:
            self._round = 'alphas'
            stats = super()._attribute_in_view_chunks(video, chunk, target,
                                                      data_samples)
            self._shared['alphas'] = _alphas_from_sums(
                self._conv_channels(), stats.extras['cfp_sums'],
                stats.extras['cfp_counts'])
            self._round = 'tubes'
            result = super()._attribute_in_view_chunks(
                video, self._views_per_pass or chunk, target, data_samples)
            result.extras['cfp_graph'] = self._shared['graphs']
            result.extras['cfp_timing'] = dict(self.last_timing)
            return result
        finally:
            self._round, self._shared = None, {}

    def _conv_channels(self) -> List[tuple]:
        """``(name, in_channels)`` of every conv, in module order."""
        return [(n, m.in_channels) for n, m in self.model.named_modules()
                if isinstance(m, (nn.Conv2d, nn.Conv3d))]

    def _alpha_pass(self, inputs: Tensor, target: TargetSpec,
                    data_samples: Optional[Sequence]) -> Attribution:
        """Round 1 on one pass of views: scores, zero maps, extras
        ``cfp_sums`` ``[B, sum C_in]`` (float64) and ``cfp_counts``
        ``[B, convs]`` (added up over the passes)."""
        convs = self._conv_channels()
        b = inputs.shape[0]
        with channel_sums(self.model, [n for n, _ in convs], b) as acc, \
                torch.no_grad():
            scores = self.adapter.scores(inputs.detach())
        targets = resolve_targets(target, scores, data_samples)
        sums, counts = [], []
        for name, channels in convs:
            s, n = acc.get(name, (None, 0.0))
            sums.append(s if s is not None else torch.zeros(
                b, channels, dtype=torch.float64, device=inputs.device))
            counts.append(torch.full((b, 1), float(n), dtype=torch.float64,
                                     device=inputs.device))
        _, views, t, h, w = self.adapter.input_shape(inputs)
        return Attribution(
            inputs.new_zeros(b, views, t, h, w), scores.detach(), targets,
            extras={'cfp_sums': torch.cat(sums, 1),
                    'cfp_counts': torch.cat(counts, 1)})

    def _tube_pass(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        """Round 2 on one pass of views: the first pass walks the graphs
        (its autograd graph traced, ``alpha`` of all views), every pass
        gives its views' tubes."""
        shared = self._shared
        first = 'walker' not in shared
        rec, scores, targets = self._recorded_forward(inputs, target,
                                                      data_samples, first)
        if first:
            walker, graphs = self._walk(rec, inputs, targets,
                                        shared['alphas'])
            shared['graphs'] = graphs
            # later passes reuse the graphs, not this pass's activations
            shared['walker'] = walker.for_views(None, None)
        else:
            walker = shared['walker'].for_views(rec, inputs)
        tubes, root = self._tubes(walker, shared['graphs'])
        return Attribution(root, scores.detach(), targets,
                           extras={'cfp_tubes': tubes})


@contextlib.contextmanager
def channel_sums(model: nn.Module, names: Sequence[str], batch: int
                 ) -> Iterator[Dict[str, tuple]]:
    """Inside the block, each named conv's input reduced as it runs to
    ``(sums [B, C_in] float64, count)``: per sample, the sum over views and
    positions of each channel and how many values it adds (rows are
    sample-major, as the toolbox flattens ``[B, V, ...]``). Nothing else is
    kept (hooks removed on exit)."""
    acc: Dict[str, tuple] = {}
    modules = dict(model.named_modules())
    handles = []

    def hook(name):
        def fn(mod, args):
            x = args[0].detach()
            s = x.reshape(batch, -1, x.shape[1], *x.shape[2:]).sum(
                dim=[d for d in range(x.dim() + 1) if d not in (0, 2)],
                dtype=torch.float64)
            n = x.numel() / (batch * x.shape[1])
            old, m = acc.get(name, (None, 0.0))
            acc[name] = (s if old is None else old + s, m + n)
        return fn
    try:
        for name in names:
            handles.append(modules[name].register_forward_pre_hook(
                hook(name)))
        yield acc
    finally:
        for h in handles:
            h.remove()


def _alphas_from_sums(convs: Sequence[tuple], sums: Tensor, counts: Tensor
                      ) -> Dict[str, Tensor]:
    """Per conv ``alpha [B, C_in]`` (float32) from the passes' summed
    channel sums and counts (convs that did not run: left out)."""
    out, start = {}, 0
    for i, (name, channels) in enumerate(convs):
        n = counts[:, i:i + 1]
        if bool((n > 0).all()):
            out[name] = (sums[:, start:start + channels] / n).float()
        start += channels
    return out
