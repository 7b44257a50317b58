"""The Class Feature Pyramid back-step (:class:`Walker`): per sample, the
class's kernel graph over the recorded activations, and a tube per node."""
import contextlib
import copy
import gc
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ...adapters.base import upsample_maps
from ...errors import UnsupportedModelError
from .recorder import Recorder
from .tracer import Producer, trace_channels

#: A graph node's identity: ``(id, layer, kernel, is_conv)``.
_Info = Tuple[str, str, int, bool]


class Walker:
    """The back-step over recorded activations (one graph per sample).

    Children are computed per conv layer for all kernels of a back-step level
    at once (:meth:`_select`); the graph is then built depth-first from those
    lists. ``mmxai.testing.cfp_reference.PerKernelWalker`` is the
    straightforward per-kernel reference (same results).

    Args:
        rec: the recorded forward pass.
        inputs: the preprocessed inputs of that pass.
        adapter: the model adapter (activation grids, input shape).
        class_weights: ``[K, C]`` class weights on the classifier's input
            (min-max normalised here).
        theta: threshold in [0, 1] for seeds and children.
        depth: number of back-steps.
        max_children: keep at most this many (strongest) children per node.
        tubes_per_level: tubes for this many strongest nodes per level.
    """

    def __init__(self, rec: Recorder, inputs: Tensor, adapter,
                 class_weights: Tensor, theta: float, depth: int,
                 max_children: Optional[int] = None,
                 tubes_per_level: int = 6):
        self.rec, self.inputs, self.adapter = rec, inputs, adapter
        self.theta, self.depth = float(theta), int(depth)
        self.max_children = max_children
        self.tubes_per_level = int(tubes_per_level)
        weights = class_weights.float()
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
        """``[B, C_in]`` global average of ``layer``'s input per sample
        (over views and positions, summed in float64: view passes sum the
        same numbers, :func:`channel_sums`). Preset in ``_alphas`` when the
        views were recorded in passes."""
        if layer not in self._alphas:
            g = self.grid(layer)  # [B, V, C, t, h, w]
            total = g.sum(dim=(1, 3, 4, 5), dtype=torch.float64)
            self._alphas[layer] = (total / g[0, :, 0].numel()).float()
        return self._alphas[layer]

    def for_views(self, rec: Optional[Recorder], inputs: Optional[Tensor]
                  ) -> 'Walker':
        """This walker's graphs (rows, levels, alphas, kernels, producers)
        over the activations of another forward ``rec`` of ``inputs`` (a
        pass of other views of the same samples): :meth:`tubes` of those
        views. ``None``: a walker holding no activations."""
        other = copy.copy(self)
        other.rec, other.inputs, other._grids = rec, inputs, {}
        other.head_parts = [] if rec is None else (
            list(rec.head_in[0]) if isinstance(rec.head_in[0], (tuple, list))
            else [rec.head_in[0]])
        return other

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

    def infos(self, layer: str) -> List[_Info]:
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
        as the per-kernel reference does (its tie order is not the stable
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
        theta, limit = self.theta, self.max_children
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

    def _prefetch(self, b: int, seeds: List[_Info]) -> None:
        """Children of every kernel within ``depth - 1`` back-steps of the
        seeds (all the depth-first walk can expand), one batch per level
        and layer."""
        seen = set()
        frontier: Dict[str, List[int]] = {}
        for _, layer, kernel, is_conv in seeds:
            if is_conv and (layer, kernel) not in seen:
                seen.add((layer, kernel))
                frontier.setdefault(layer, []).append(kernel)
        for _ in range(self.depth):
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
        seeds = (w >= self.theta).nonzero().view(-1)
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
        return dict(sample=b, **{'class': cls}, theta=self.theta,
                    depth=self.depth, root=root)

    def _builder(self, b: int, levels: Dict[int, List[dict]]):
        """Depth-first node builder for sample ``b``: a kernel reached again
        after its first (expanded) occurrence is a ``ref`` leaf."""
        depth, expanded = self.depth, set()
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
                    best = best[:self.tubes_per_level]
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

    def root_maps(self, tubes: Dict[str, Tensor], graphs: List[dict]
                  ) -> Tensor:
        """Each sample's root tube ``[B, V, T, H, W]`` (zeros without one)."""
        _, views, t, h, w = self.adapter.input_shape(self.inputs)
        raw = torch.zeros(len(graphs), views, t, h, w,
                          device=self.inputs.device)
        for b, g in enumerate(graphs):
            m = tubes.get(g['root']['id'])
            if m is not None:
                raw[b] = m[b]
        return raw

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
        return out, self.root_maps(out, graphs)


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
