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
"""
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
        start = time.perf_counter()
        walker = _Walker(self, rec, inputs)
        graphs = [walker.graph(b, int(targets[b]))
                  for b in range(targets.shape[0])]
        backstep = time.perf_counter() - start
        start = time.perf_counter()
        tubes, root = walker.tubes(graphs)
        self.last_timing = dict(backstep_s=backstep,
                                tubes_s=time.perf_counter() - start)
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
    """The back-step over recorded activations (one graph per sample)."""

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
        self._grids: Dict[str, Tensor] = {}
        self._alphas: Dict[str, Tensor] = {}
        self._kappas: Dict[str, Tensor] = {}
        self._children: Dict[Tuple[int, str, int], List[Tuple[int, float]]] = {}

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
        """``[C_out, C_in/groups]`` kernels averaged over their extent."""
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
        order = p[keep].argsort(descending=True)
        keep = keep[order]
        if self.cfp.max_children is not None:
            keep = keep[:self.cfp.max_children]
        out = [(lo + int(j), float(p[j])) for j in keep]
        self._children[key] = out
        return out

    # -------------------------------------------------------------- graph
    def graph(self, b: int, cls: int) -> Dict[str, Any]:
        """Nested dict for sample ``b``: the class and its kernel tree."""
        self._expanded = set()
        w = self.weights[cls]
        seeds = (w >= self.cfp.theta).nonzero().view(-1)
        seeds = seeds[w[seeds].argsort(descending=True)]
        root = dict(id=f'class:{cls}', layer='cls_head', kernel=cls, level=0,
                    score=1.0, children=[])
        root_children = []
        for k in seeds.tolist():
            src = self.seed_map[k] if k < len(self.seed_map) else None
            if src is None:
                raise UnsupportedModelError(
                    f'classifier input channel {k} cannot be traced back to '
                    'the head input features')
            part, ch = int(src[0][5:]), src[1]
            root_children.append([f'head:{part}', ch])
            prod = self.part_producers(part)[ch]
            root['children'].append(self._node(
                b, prod, float(w[k]), 1, activation=f'head:{part}',
                channel=ch))
        root['tube_channels'] = root_children
        return dict(sample=b, **{'class': cls}, theta=self.cfp.theta,
                    depth=self.cfp.depth, root=root)

    def _node(self, b: int, prod: Producer, score: float, level: int,
              activation: str, channel: int) -> Dict[str, Any]:
        if prod is None:  # the network input
            return dict(id=f'input:{channel}', layer='input', kernel=channel,
                        level=level, score=round(score, 6), children=[])
        layer, kernel = prod
        node = dict(id=f'{layer}:{kernel}', layer=layer, kernel=kernel,
                    level=level, score=round(score, 6), children=[])
        if level > self.cfp.depth:
            return node
        if node['id'] in self._expanded:  # a DAG: children listed once
            node['ref'] = True
            return node
        self._expanded.add(node['id'])
        node['expanded'] = True
        ins = self.producers(layer)
        for j, pj in self.children(b, layer, kernel):
            node['children'].append(self._node(
                b, ins[j], pj, level + 1, activation=layer, channel=j))
        return node

    # -------------------------------------------------------------- tubes
    def tubes(self, graphs: List[dict]) -> Tuple[Dict[str, Tensor], Tensor]:
        """Per node id ``[B, V, T, H, W]`` tubes (zeros for samples without
        that node) and the roots' tubes ``[B, V, T, H, W]``."""
        _, _, t, h, w = self.adapter.input_shape(self.inputs)
        batch = len(graphs)
        keep: Dict[str, Dict[int, Tuple[str, List[int]]]] = {}
        roots = []
        for b, g in enumerate(graphs):
            per_level: Dict[int, Dict[str, Tuple[float, dict]]] = {}
            _collect(g['root'], per_level)
            for level, nodes in per_level.items():
                best = sorted(nodes.values(), key=lambda sn: -sn[0])
                if level > 0:
                    best = best[:self.cfp.tubes_per_level]
                for _, node in best:
                    keep.setdefault(node['id'], {})[b] = node
            roots.append(g['root'])
        out: Dict[str, Tensor] = {}
        for node_id, per_sample in keep.items():
            tube = None
            for b, node in per_sample.items():
                m = self._tube(b, node, (t, h, w))
                if m is None:
                    continue
                if tube is None:
                    tube = m.new_zeros((batch, *m.shape[1:]))
                tube[b] = m[0]
            if tube is not None:
                out[node_id] = tube
        views = self.adapter.input_shape(self.inputs)[1]
        raw = torch.zeros(batch, views, t, h, w, device=self.inputs.device)
        for b, g in enumerate(graphs):
            m = out.get(g['root']['id'])
            if m is not None:
                raw[b] = m[b]
        return out, raw

    def _tube(self, b: int, node: dict, size) -> Optional[Tensor]:
        """``[1, V, T, H, W]`` sum of the node's children's activations."""
        if node['level'] == 0:
            chans = node['tube_channels']
        elif node.get('expanded'):
            chans = [(node['layer'], j) for j, _ in self.children(
                b, node['layer'], node['kernel'])]
        else:
            return None
        if not chans:
            return None
        total = None
        by_key: Dict[str, List[int]] = {}
        for key, ch in chans:
            by_key.setdefault(key, []).append(ch)
        for key, chs in by_key.items():
            g = self.grid(key)[b:b + 1]  # [1, V, C, t, h, w]
            m = g[:, :, chs].float().sum(2)
            m = upsample_maps(m, size)
            total = m if total is None else total + m
        return total


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
