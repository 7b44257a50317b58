"""Class Feature Pyramids (Stergiou et al., ICCVW 2019).

A class is explained by the hierarchy of kernels, across network depth, that
are informative for it: seed kernels from the min-max normalised classifier
weights, then a back-step through ``depth`` convolution layers that keeps the
input channels ``j`` of each selected kernel whose normalised contribution
``p_j = kappa_j * alpha_j`` reaches ``theta``. One forward pass, no gradients.

Which convolution produced which channel of a layer's input is read from the
autograd graph of that one forward pass (residual branches, downsample
shortcuts, concatenations such as SlowFast's laterals, slices and splits, and
the reshapes of 2D recognizers and TSM), so no per-architecture code is
needed. Grouped and depth-wise kernels only see the input channels of their
own group.

The back-step is batched: for all kernels of one conv layer at one level,
``p``, its normalisation and the threshold are one tensor operation; the
nested graph is then built from plain lists (times: ``docs/cfp.md``).
"""
import contextlib
import gc
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ..adapters.base import upsample_maps
from ..errors import MMXAIError, UnsupportedModelError
from ..registry import EXPLAINERS
from .base import BaseExplainer
from .targets import TargetSpec, resolve_targets

#: Thresholds the paper reports per network (``theta='i3d'`` picks one).
PAPER_THETAS = {'mfnet': 0.6, 'i3d': 0.65, 'r50_3d': 0.55, 'r101_3d': 0.6,
                'r152_3d': 0.6, 'resnext101_3d': 0.6}

#: Autograd nodes through which channels cannot be followed.
_STOP_OPS = ('Mm', 'Addmm', 'Bmm', 'Baddbmm', 'Matmul', 'Linear', 'Embedding',
             'Index', 'Gather', 'Scatter', 'Convolution', 'Einsum', 'Masked')
_MAX_VISITS = 200000

Producer = Optional[Tuple[str, int]]


def _shape(fn, output_nr: int) -> Optional[Tuple[int, ...]]:
    try:
        return tuple(fn._input_metadata[output_nr].shape)
    except (AttributeError, IndexError, RuntimeError):
        return None


def _prod(xs) -> int:
    out = 1
    for x in xs:
        out *= int(x)
    return out


def _input_channel_dim(kind: str, fn, cd: int, s_out: Tuple[int, ...],
                       s_in: Tuple[int, ...]) -> Optional[int]:
    """Channel dim in an op's input, given it is ``cd`` in its output."""
    if kind.startswith('Permute'):
        return int(fn._saved_dims[cd]) % len(s_in)
    if kind.startswith('Transpose'):
        d0 = int(fn._saved_dim0) % len(s_out)
        d1 = int(fn._saved_dim1) % len(s_out)
        return d1 if cd == d0 else d0 if cd == d1 else cd
    if len(s_in) == len(s_out) and s_in[cd] == s_out[cd]:
        return cd  # element-wise, pooling, normalisation, ...
    if len(s_in) == len(s_out) and s_in[cd] == 1:
        return None  # broadcast over channels: no channel identity
    prefix = _prod(s_out[:cd])
    for d, size in enumerate(s_in):  # views, squeezes, reductions
        if size == s_out[cd] and _prod(s_in[:d]) == prefix:
            return d
    return None


def trace_channels(tensor: Tensor, markers: Dict[Any, str]) -> List[Producer]:
    """For each channel (dim 1) of ``tensor``, the marked tensor and channel
    it comes from, following its autograd graph backwards.

    Args:
        tensor: ``[N, C, ...]`` produced with autograd recording.
        markers: autograd node of a marked tensor (e.g. a conv output) -> key.
    Returns:
        ``C`` entries ``(key, channel)``, or None where no marked tensor is
        reached (e.g. the network input). A channel fed by several marked
        tensors (a residual sum) gets the first one in the order the op
        lists its operands (``out + identity``: the residual branch).
    """
    num = tensor.shape[1]
    result: List[Producer] = [None] * num
    fn0 = tensor.grad_fn
    if fn0 is None:
        return result
    left = num
    stack = [(fn0, tensor.output_nr, 1, torch.arange(num))]
    visits = 0
    while stack and left and visits < _MAX_VISITS:
        fn, out_nr, cd, sel = stack.pop()
        visits += 1
        key = markers.get(fn)
        if key is not None:
            for j in (sel >= 0).nonzero().view(-1).tolist():
                if result[j] is None:
                    result[j] = (key, int(sel[j]))
                    left -= 1
            continue
        kind = type(fn).__name__
        if kind.startswith(_STOP_OPS) or kind == 'AccumulateGrad':
            continue
        s_out = _shape(fn, out_nr)
        if s_out is None:
            continue
        cd = cd % len(s_out)
        nexts = [(f, n) for f, n in fn.next_functions if f is not None]
        sel_here = sel
        if kind.startswith(('SplitBackward', 'SplitWithSizesBackward',
                            'UnbindBackward')):
            dim = int(fn._saved_dim)
            s_full = tuple(fn._saved_self_sym_sizes)
            dim %= len(s_full)
            if kind.startswith('SplitWithSizes'):
                offset = sum(int(s) for s in fn._saved_split_sizes[:out_nr])
            elif kind.startswith('Split'):
                offset = int(fn._saved_split_size) * out_nr
            else:
                offset = out_nr
            if dim == cd and not kind.startswith('Unbind'):
                sel_here = torch.where(sel >= 0, sel + offset, sel)
        pushes = []
        offset = 0
        for f, n in nexts:
            s_in = _shape(f, n)
            if s_in is None or len(s_in) == 0:
                continue
            sel_in, cd_in = sel_here, None
            if kind.startswith('CatBackward'):
                dim = int(fn._saved_dim) % len(s_out)
                cd_in = cd
                if dim == cd:
                    size = s_in[cd]
                    ok = (sel >= offset) & (sel < offset + size)
                    sel_in = torch.where(ok, sel - offset,
                                         torch.full_like(sel, -1))
                    offset += size
            elif kind.startswith('SliceBackward'):
                dim = int(fn._saved_dim) % len(s_out)
                cd_in = cd
                if dim == cd:
                    start = int(fn._saved_start)
                    start = start + s_in[cd] if start < 0 else start
                    step = int(fn._saved_step)
                    sel_in = torch.where(sel >= 0, start + sel * step, sel)
            elif kind.startswith(('SplitBackward', 'SplitWithSizesBackward')):
                cd_in = cd
            else:
                cd_in = _input_channel_dim(kind, fn, cd, s_out, s_in)
            if cd_in is None or not bool((sel_in >= 0).any()):
                continue
            pushes.append((f, n, cd_in, sel_in))
        stack.extend(reversed(pushes))  # first operand explored first
    return result


class _Recorder:
    """Forward hooks on every conv and on the classifier's input."""

    def __init__(self, model: nn.Module, classifier: nn.Module):
        self.inputs: Dict[str, List[Tensor]] = {}
        self.order: List[str] = []
        self.markers: Dict[Any, str] = {}
        self.modules: Dict[str, nn.Module] = {}
        self.head_in: List = []
        self.fc_in: List[Tensor] = []
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                self.modules[name] = m
                self.handles.append(m.register_forward_hook(
                    lambda mod, args, out, n=name: self._conv(n, args, out)))
        head = model.cls_head
        self.handles.append(head.register_forward_pre_hook(
            lambda mod, args: self.head_in.append(args[0])))
        self.handles.append(classifier.register_forward_pre_hook(
            lambda mod, args: self.fc_in.append(args[0])))

    def _conv(self, name: str, args, out: Tensor) -> None:
        if name not in self.inputs:
            self.inputs[name] = []
            self.order.append(name)
        self.inputs[name].append(args[0])
        if out.grad_fn is not None:
            self.markers[out.grad_fn] = name

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


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
    name = 'cfp'
    #: private: ``_PerKernelWalker`` gives the per-kernel reference path
    _walker_cls: type = None  # ``_Walker``, set below

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
                   data_samples: Optional[Sequence]):
        adapter = self.adapter
        rec = _Recorder(self.model, self.classifier)
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
        walker = self._walker_cls(self, rec, inputs)
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
        return root, {}, scores.detach(), targets, extras

    # -------------------------------------------------------------- files
    def write_extras(self, explanation, out_dir: str, frames=None,
                     class_names: Optional[Sequence[str]] = None,
                     sample: int = 0, view: int = 0) -> List[str]:
        """Write ``cfp_graph.json`` and ``cfp_pyramid.png`` (sample
        ``sample``, view ``view``) into ``out_dir``; returns their paths.

        ``frames``: uint8 ``[T, H, W, 3]`` of that view (default: grey).
        """
        import os

        from ..visualization.cfp_figure import (save_cfp_graph_json,
                                                save_pyramid_figure)
        graph = explanation.extras['cfp_graph'][sample]
        tubes = {k: v[sample, view] for k, v in
                 explanation.extras['cfp_tubes'].items()}
        paths = [save_cfp_graph_json(os.path.join(out_dir, 'cfp_graph.json'),
                                     graph)]
        if frames is None:
            t, h, w = explanation.maps.shape[2:]
            import numpy as np
            frames = np.full((t, h, w, 3), 128, np.uint8)
        label = None
        if class_names and graph['class'] < len(class_names):
            label = class_names[graph['class']]
        paths.append(save_pyramid_figure(
            os.path.join(out_dir, 'cfp_pyramid.png'), frames, graph, tubes,
            class_name=label))
        return paths


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


class _Walker:
    """The back-step over recorded activations (one graph per sample).

    Children are computed per conv layer for all kernels of a back-step level
    at once (:meth:`_select`); the graph is then built depth-first from those
    lists. :class:`_PerKernelWalker` is the straightforward per-kernel
    reference (same results) used by the tests and the benchmark.
    """

    def __init__(self, cfp: ClassFeaturePyramid, rec: _Recorder,
                 inputs: Tensor):
        self.cfp, self.rec, self.inputs = cfp, rec, inputs
        self.adapter = cfp.adapter
        weights = cfp.class_weights_fn().float()
        lo, hi = weights.min(), weights.max()
        self.weights = (weights - lo) / (hi - lo).clamp_min(1e-12)
        parts = rec.head_in[0]
        parts = list(parts) if isinstance(parts, (tuple, list)) else [parts]
        self.head_parts = parts
        head_markers = {p.grad_fn: f'head:{i}' for i, p in enumerate(parts)
                        if isinstance(p, Tensor) and p.grad_fn is not None}
        fc_in = rec.fc_in[0]
        self.seed_map = trace_channels(fc_in, head_markers)
        self._part_maps: Dict[int, List[Producer]] = {}
        self._in_maps: Dict[str, List[Producer]] = {}
        self._infos: Dict[str, List[_Info]] = {}
        self._grids: Dict[str, Tensor] = {}
        self._alphas: Dict[str, Tensor] = {}
        self._kappas: Dict[str, Tensor] = {}
        #: (sample, layer, kernel) -> children (channels, p, round(p, 6))
        self._rows: Dict[Tuple[int, str, int], Tuple[list, list, list]] = {}
        #: the per-kernel reference's cache
        self._children: Dict[Tuple[int, str, int],
                             List[Tuple[int, float]]] = {}
        #: per sample: level -> expanded nodes in depth-first order
        self._levels: Dict[int, Dict[int, List[dict]]] = {}

    # ------------------------------------------------------------ helpers
    def grid(self, key: str) -> Tensor:
        """``[B, V, C, t, h, w]`` activation: a conv's input or a head part."""
        if key not in self._grids:
            if key.startswith('head:'):
                act = self.head_parts[int(key[5:])]
            else:
                acts = self.rec.inputs[key]
                act = acts[0] if len(acts) == 1 else torch.cat(acts)
            self._grids[key] = self.adapter.activation_grid(
                key, act.detach(), self.inputs)
        return self._grids[key]

    def alpha(self, layer: str) -> Tensor:
        """``[B, C_in]`` global average of ``layer``'s input per sample."""
        if layer not in self._alphas:
            g = self.grid(layer)
            self._alphas[layer] = g.transpose(1, 2).flatten(2).mean(-1).float()
        return self._alphas[layer]

    def kappa(self, layer: str) -> Tensor:
        """``[C_out, C_in/groups]`` kernels averaged over their extent
        (computed once per call: cheap, and never stale)."""
        if layer not in self._kappas:
            w = self.rec.modules[layer].weight.detach().float()
            self._kappas[layer] = w.flatten(2).mean(-1)
        return self._kappas[layer]

    def producers(self, key: str) -> List[Producer]:
        """Producer ``(conv, channel)`` of each channel of a conv's input."""
        if key not in self._in_maps:
            acts = self.rec.inputs[key]
            self._in_maps[key] = trace_channels(
                acts[0], self.rec.markers)
        return self._in_maps[key]

    def infos(self, layer: str) -> List['_Info']:
        """Node identity of the producer of each input channel of ``layer``."""
        if layer not in self._infos:
            self._infos[layer] = [_info(p, j) for j, p in
                                  enumerate(self.producers(layer))]
        return self._infos[layer]

    def part_producers(self, part: int) -> List[Producer]:
        if part not in self._part_maps:
            t = self.head_parts[part]
            if t.grad_fn in self.rec.markers:  # the part is a conv output
                name = self.rec.markers[t.grad_fn]
                self._part_maps[part] = [(name, j) for j in range(t.shape[1])]
            else:
                self._part_maps[part] = trace_channels(t, self.rec.markers)
        return self._part_maps[part]

    def children(self, b: int, layer: str, kernel: int
                 ) -> List[Tuple[int, float]]:
        """Input channels of ``layer`` informative for ``kernel``:
        ``[(j, p_j)]`` with ``p_j >= theta``, strongest first."""
        key = (b, layer, kernel)
        if key not in self._rows:
            self._select(b, layer, [kernel])
        js, ps, _ = self._rows[key]
        return list(zip(js, ps))

    def _select(self, b: int, layer: str, kernels: List[int]) -> List[int]:
        """Children of ``kernels`` of ``layer`` (sample ``b``) in one batched
        operation, stored in ``_rows`` as ``(channels, p, round(p, 6))``
        lists; returns the selected channels (ascending).

        ``p = kappa[kernels] * alpha[b, group channels]``: ``[n, C_in/g]``,
        min-max normalised per row (flat rows: ``p > 0``), kept where
        ``>= theta``, strongest first, at most ``max_children``. Rows whose
        kept values tie are redone with ``argsort`` on the row's kept values,
        as :class:`_PerKernelWalker` does (its tie order is not the stable
        one), so the graphs are identical.
        """
        conv = self.rec.modules[layer]
        kap = self.kappa(layer)
        per_group = kap.shape[1]
        rows = torch.tensor(kernels, dtype=torch.long, device=kap.device)
        lo = rows // (conv.out_channels // conv.groups) * per_group  # [n]
        cols = lo[:, None] + torch.arange(per_group, device=kap.device)
        alpha = self.alpha(layer)[b]
        p = kap.index_select(0, rows) * alpha[cols]                # [n, G]
        p_min = p.amin(1, keepdim=True)
        rng = p.amax(1, keepdim=True) - p_min
        flat = rng.double() <= 1e-12  # one candidate (depth-wise) or equal
        p = torch.where(flat, (p > 0).float(), (p - p_min) / rng)
        theta, limit = self.cfp.theta, self.cfp.max_children
        # sort the kept entries only: by value (descending), then by row;
        # both stable, so equal values stay in channel order
        row, col = (p >= theta).nonzero().unbind(1)
        kept = p[row, col]
        order = kept.argsort(descending=True, stable=True)
        order = order[row[order].argsort(stable=True)]
        row, chans, kept = row[order], col[order] + lo[row[order]], kept[order]
        same = (kept[1:] == kept[:-1]) & (row[1:] == row[:-1])
        ties = torch.zeros(len(kernels), dtype=torch.bool, device=p.device)
        ties[row[1:][same]] = True
        counts = torch.bincount(row, minlength=len(kernels))
        if limit is not None:
            first = torch.cumsum(counts, 0) - counts  # row starts
            top = torch.arange(row.numel(), device=p.device) - first[row] \
                < limit
            row, chans, kept = row[top], chans[top], kept[top]
            counts = counts.clamp(max=limit)
        js, ps, rs = chans.tolist(), kept.tolist(), _round6(kept).tolist()
        start = 0
        for kernel, count in zip(kernels, counts.tolist()):
            stop = start + count
            self._rows[(b, layer, kernel)] = (
                js[start:stop], ps[start:stop], rs[start:stop])
            start = stop
        hit = torch.zeros(alpha.shape[0], dtype=torch.bool, device=p.device)
        hit[chans] = True
        tied = ties.nonzero().view(-1)
        if tied.numel():  # the order of tied values is argsort's: redo them
            sub = p[tied]
            mask = sub >= theta                                    # [m, G]
            tie_counts = mask.sum(1)
            cols_t, vals_t = mask.nonzero()[:, 1], sub[mask]
            chans_t = cols_t + lo[tied].repeat_interleave(tie_counts)
            hit[chans_t] = True  # a superset where ``limit`` cuts a tie
            js, ps = chans_t.tolist(), vals_t.tolist()
            rs = _round6(vals_t).tolist()
            start = 0
            for i, count in zip(tied.tolist(), tie_counts.tolist()):
                rank = vals_t[start:start + count].argsort(
                    descending=True).tolist()[:limit]
                self._rows[(b, layer, kernels[i])] = (
                    [js[start + r] for r in rank],
                    [ps[start + r] for r in rank],
                    [rs[start + r] for r in rank])
                start += count
        return hit.nonzero().view(-1).tolist()

    def _prefetch(self, b: int, seeds: List['_Info']) -> None:
        """Children of every kernel within ``depth - 1`` back-steps of the
        seeds (all the depth-first walk can expand), one batch per level
        and layer."""
        seen = set()
        frontier: Dict[str, List[int]] = {}
        for _, layer, kernel, is_conv in seeds:
            if is_conv and (layer, kernel) not in seen:
                seen.add((layer, kernel))
                frontier.setdefault(layer, []).append(kernel)
        for _ in range(self.cfp.depth):
            nxt: Dict[str, List[int]] = {}
            for layer, kernels in frontier.items():
                todo = [k for k in kernels if (b, layer, k) not in self._rows]
                if not todo:
                    continue
                infos = self.infos(layer)
                for j in self._select(b, layer, todo):
                    _, lay, ker, is_conv = infos[j]
                    if is_conv and (lay, ker) not in seen:
                        seen.add((lay, ker))
                        nxt.setdefault(lay, []).append(ker)
            frontier = nxt

    # -------------------------------------------------------------- graph
    def graph(self, b: int, cls: int) -> Dict[str, Any]:
        """Nested dict for sample ``b``: the class and its kernel tree."""
        w = self.weights[cls]
        seeds = (w >= self.cfp.theta).nonzero().view(-1)
        seeds = seeds[w[seeds].argsort(descending=True)]
        root = dict(id=f'class:{cls}', layer='cls_head', kernel=cls, level=0,
                    score=1.0, children=[])
        root_children, infos = [], []
        for k in seeds.tolist():
            src = self.seed_map[k] if k < len(self.seed_map) else None
            if src is None:
                raise UnsupportedModelError(
                    f'classifier input channel {k} cannot be traced back to '
                    'the head input features')
            part, ch = int(src[0][5:]), src[1]
            root_children.append([f'head:{part}', ch])
            infos.append(_info(self.part_producers(part)[ch], ch))
        levels: Dict[int, List[dict]] = {0: [root]}
        self._levels[b] = levels
        build = self._builder(b, levels)
        scores = _round6(w[seeds]).tolist()
        with _gc_paused():  # many small acyclic objects: skip GC passes
            self._prefetch(b, infos)
            root['children'] = [build(info, score, 1)
                                for info, score in zip(infos, scores)]
        root['tube_channels'] = root_children
        return dict(sample=b, **{'class': cls}, theta=self.cfp.theta,
                    depth=self.cfp.depth, root=root)

    def _builder(self, b: int, levels: Dict[int, List[dict]]):
        """Depth-first node builder for sample ``b``: a kernel reached again
        after its first (expanded) occurrence is a ``ref`` leaf."""
        depth, expanded = self.cfp.depth, set()
        rows, infos = self._rows, self.infos

        def build(info: _Info, score: float, level: int) -> dict:
            node_id, layer, kernel, is_conv = info
            node = {'id': node_id, 'layer': layer, 'kernel': kernel,
                    'level': level, 'score': score, 'children': []}
            if not is_conv or level > depth:
                return node
            if node_id in expanded:  # a DAG: children listed once
                node['ref'] = True
                return node
            expanded.add(node_id)
            node['expanded'] = True
            levels.setdefault(level, []).append(node)
            if (b, layer, kernel) not in rows:
                self._select(b, layer, [kernel])
            js, _, rs = rows[(b, layer, kernel)]
            ins, lvl = infos(layer), level + 1
            if lvl > depth:  # leaves
                node['children'] = [
                    {'id': ins[j][0], 'layer': ins[j][1],
                     'kernel': ins[j][2], 'level': lvl, 'score': s,
                     'children': []} for j, s in zip(js, rs)]
            else:
                node['children'] = [build(ins[j], s, lvl)
                                    for j, s in zip(js, rs)]
            return node
        return build

    # -------------------------------------------------------------- tubes
    def _candidates(self, graphs: List[dict]) -> Dict[str, Dict[int, dict]]:
        """Node id -> {sample: node} of the nodes that get a tube: the root
        and the ``tubes_per_level`` strongest expanded nodes per level."""
        keep: Dict[str, Dict[int, dict]] = {}
        for b, g in enumerate(graphs):
            levels = self._levels.get(b)
            if levels is None:
                per_level: Dict[int, Dict[str, Tuple[float, dict]]] = {}
                _collect(g['root'], per_level)
                levels = {lv: [n for _, n in nodes.values()]
                          for lv, nodes in per_level.items()}
            for level, nodes in levels.items():
                best = sorted(nodes, key=lambda n: -n['score'])
                if level > 0:
                    best = best[:self.cfp.tubes_per_level]
                for node in best:
                    keep.setdefault(node['id'], {})[b] = node
        return keep

    def _tube_channels(self, b: int, node: dict) -> Dict[str, List[int]]:
        """Activation -> channels summed into the node's tube (in order)."""
        if node['level'] == 0:
            chans = node['tube_channels']
        elif node.get('expanded'):
            chans = [(node['layer'], j) for j, _ in self.children(
                b, node['layer'], node['kernel'])]
        else:
            chans = []
        by_key: Dict[str, List[int]] = {}
        for key, ch in chans:
            by_key.setdefault(key, []).append(ch)
        return by_key

    def tubes(self, graphs: List[dict]) -> Tuple[Dict[str, Tensor], Tensor]:
        """Per node id ``[B, V, T, H, W]`` tubes (zeros for samples without
        that node) and the roots' tubes ``[B, V, T, H, W]``.

        Channel sums are taken per node and activation (``[B', V, t, h, w]``
        over the samples that have the node); the sums of one grid size are
        upsampled in one ``interpolate`` call, so tubes may be views of one
        buffer.
        """
        _, views, t, h, w = self.adapter.input_shape(self.inputs)
        batch = len(graphs)
        jobs = []  # (node id, samples, activation key, [B', V, t, h, w])
        for node_id, per_sample in self._candidates(graphs).items():
            rows = {b: self._tube_channels(b, node)
                    for b, node in per_sample.items()}
            groups: Dict[Tuple[str, ...], List[int]] = {}
            for b, by_key in rows.items():  # samples sharing activations
                if by_key:
                    groups.setdefault(tuple(by_key), []).append(b)
            for keys, samples in groups.items():
                for key in keys:
                    g = self.grid(key)
                    jobs.append((node_id, samples, key, torch.cat(
                        [g[b:b + 1, :, rows[b][key]].float().sum(2)
                         for b in samples])))
        by_shape: Dict[Tuple[int, ...], List[int]] = {}
        for i, job in enumerate(jobs):
            by_shape.setdefault(tuple(job[3].shape[2:]), []).append(i)
        big = [None] * len(jobs)
        for idx in by_shape.values():
            maps = upsample_maps(torch.cat([jobs[i][3] for i in idx]),
                                 (t, h, w))
            sizes = [jobs[i][3].shape[0] for i in idx]
            for i, m in zip(idx, maps.split(sizes)):
                big[i] = m
        sums: Dict[Tuple[str, Tuple[int, ...]], Tensor] = {}
        for (node_id, samples, _, _), m in zip(jobs, big):
            key = (node_id, tuple(samples))
            sums[key] = m if key not in sums else sums[key] + m
        out: Dict[str, Tensor] = {}
        for (node_id, samples), total in sums.items():
            if node_id not in out and list(samples) == list(range(batch)):
                out[node_id] = total
                continue
            if node_id not in out:
                out[node_id] = total.new_zeros((batch, *total.shape[1:]))
            out[node_id][list(samples)] = total
        raw = torch.zeros(batch, views, t, h, w, device=self.inputs.device)
        for b, g in enumerate(graphs):
            m = out.get(g['root']['id'])
            if m is not None:
                raw[b] = m[b]
        return out, raw


#: A graph node's identity: ``(id, layer, kernel, is_conv)``.
_Info = Tuple[str, str, int, bool]


def _info(prod: Producer, channel: int) -> _Info:
    """Node identity of a producer; None (the network input) -> the input
    channel ``channel``."""
    if prod is None:
        return f'input:{channel}', 'input', channel, False
    return f'{prod[0]}:{prod[1]}', prod[0], prod[1], True


@contextlib.contextmanager
def _gc_paused():
    """Pause Python's cyclic garbage collector (restored on exit)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _round6(x: Tensor) -> Tensor:
    """``round(v, 6)`` of float32 values, as float64 (the same numbers as
    Python's ``round``: ``v * 1e6`` is exact in float64 for a float32 ``v``,
    both round half to even, and the division is correctly rounded)."""
    return (x.double() * 1e6).round() / 1e6


def _collect(node: dict, per_level: Dict[int, Dict[str, Tuple[float, dict]]]
             ) -> None:
    """Strongest occurrence of each node id per level (tube candidates)."""
    level = per_level.setdefault(node['level'], {})
    if node['level'] == 0 or node.get('expanded'):
        prev = level.get(node['id'])
        if prev is None or node['score'] > prev[0]:
            level[node['id']] = (node['score'], node)
    for c in node['children']:
        _collect(c, per_level)


class _PerKernelWalker(_Walker):
    """Reference: one small tensor operation per kernel, recursive graph,
    one tube at a time (the straightforward implementation). Private: for
    tests and ``tools/benchmarks/bench_cfp.py --reference``."""

    def children(self, b: int, layer: str, kernel: int
                 ) -> List[Tuple[int, float]]:
        key = (b, layer, kernel)
        if key in self._children:
            return self._children[key]
        conv = self.rec.modules[layer]
        kap = self.kappa(layer)[kernel]
        per_group = kap.numel()
        group = kernel // (conv.out_channels // conv.groups)
        lo = group * per_group
        alpha = self.alpha(layer)[b, lo:lo + per_group]
        p = kap * alpha
        rng = p.max() - p.min()
        if float(rng) > 1e-12:
            p = (p - p.min()) / rng
        else:  # one candidate (depth-wise) or all equal
            p = (p > 0).float()
        keep = (p >= self.cfp.theta).nonzero().view(-1)
        keep = keep[p[keep].argsort(descending=True)]
        if self.cfp.max_children is not None:
            keep = keep[:self.cfp.max_children]
        out = [(lo + int(j), float(p[j])) for j in keep]
        self._children[key] = out
        return out

    def graph(self, b: int, cls: int) -> Dict[str, Any]:
        self._expanded = set()
        w = self.weights[cls]
        seeds = (w >= self.cfp.theta).nonzero().view(-1)
        seeds = seeds[w[seeds].argsort(descending=True)]
        root = dict(id=f'class:{cls}', layer='cls_head', kernel=cls, level=0,
                    score=1.0, children=[])
        root_children = []
        for k in seeds.tolist():
            part, ch = int(self.seed_map[k][0][5:]), self.seed_map[k][1]
            root_children.append([f'head:{part}', ch])
            root['children'].append(self._node(
                b, self.part_producers(part)[ch], float(w[k]), 1, ch))
        root['tube_channels'] = root_children
        return dict(sample=b, **{'class': cls}, theta=self.cfp.theta,
                    depth=self.cfp.depth, root=root)

    def _node(self, b: int, prod: Producer, score: float, level: int,
              channel: int) -> Dict[str, Any]:
        if prod is None:  # the network input
            return dict(id=f'input:{channel}', layer='input', kernel=channel,
                        level=level, score=round(score, 6), children=[])
        layer, kernel = prod
        node = dict(id=f'{layer}:{kernel}', layer=layer, kernel=kernel,
                    level=level, score=round(score, 6), children=[])
        if level > self.cfp.depth:
            return node
        if node['id'] in self._expanded:
            node['ref'] = True
            return node
        self._expanded.add(node['id'])
        node['expanded'] = True
        ins = self.producers(layer)
        for j, pj in self.children(b, layer, kernel):
            node['children'].append(self._node(b, ins[j], pj, level + 1, j))
        return node

    def tubes(self, graphs: List[dict]) -> Tuple[Dict[str, Tensor], Tensor]:
        _, views, t, h, w = self.adapter.input_shape(self.inputs)
        batch = len(graphs)
        out: Dict[str, Tensor] = {}
        for node_id, per_sample in self._candidates(graphs).items():
            tube = None
            for b, node in per_sample.items():
                total = None
                for key, chs in self._tube_channels(b, node).items():
                    m = self.grid(key)[b:b + 1, :, chs].float().sum(2)
                    m = upsample_maps(m, (t, h, w))
                    total = m if total is None else total + m
                if total is None:
                    continue
                if tube is None:
                    tube = total.new_zeros((batch, *total.shape[1:]))
                tube[b] = total[0]
            if tube is not None:
                out[node_id] = tube
        raw = torch.zeros(batch, views, t, h, w, device=self.inputs.device)
        for b, g in enumerate(graphs):
            m = out.get(g['root']['id'])
            if m is not None:
                raw[b] = m[b]
        return out, raw


ClassFeaturePyramid._walker_cls = _Walker
