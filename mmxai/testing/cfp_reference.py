"""The per-kernel reference of the Class Feature Pyramid back-step, to
check the batched :class:`~mmxai.explainers.cfp.Walker` against (tests,
``tools/benchmarks/bench_cfp.py --reference``)."""
from typing import Any, Dict, List, Set, Tuple

from torch import Tensor

from ..adapters.base import upsample_maps
from ..explainers.cfp.tracer import Producer
from ..explainers.cfp.walker import Walker

__all__ = ['PerKernelWalker']


class PerKernelWalker(Walker):
    """Reference: one small tensor operation per kernel, recursive graph,
    one tube at a time (the straightforward implementation); same graphs
    and tubes as :class:`~mmxai.explainers.cfp.Walker`.

    Use: ``cfp._walker_cls = PerKernelWalker`` on a ``ClassFeaturePyramid``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        #: (sample, layer, kernel) -> children ``[(j, p_j)]``
        self._children: Dict[Tuple[int, str, int],
                             List[Tuple[int, float]]] = {}
        self._expanded: Set[str] = set()

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
        keep = (p >= self.theta).nonzero().view(-1)
        keep = keep[p[keep].argsort(descending=True)]
        if self.max_children is not None:
            keep = keep[:self.max_children]
        out = [(lo + int(j), float(p[j])) for j in keep]
        self._children[key] = out
        return out

    def graph(self, b: int, cls: int) -> Dict[str, Any]:
        self._expanded = set()
        w = self.weights[cls]
        seeds = (w >= self.theta).nonzero().view(-1)
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
        return dict(sample=b, **{'class': cls}, theta=self.theta,
                    depth=self.depth, root=root)

    def _node(self, b: int, prod: Producer, score: float, level: int,
              channel: int) -> Dict[str, Any]:
        if prod is None:  # the network input
            return dict(id=f'input:{channel}', layer='input', kernel=channel,
                        level=level, score=round(score, 6), children=[])
        layer, kernel = prod
        node = dict(id=f'{layer}:{kernel}', layer=layer, kernel=kernel,
                    level=level, score=round(score, 6), children=[])
        if level > self.depth:
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
        return out, self.root_maps(out, graphs)
