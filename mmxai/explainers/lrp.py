"""Layer-wise relevance propagation (Bach et al. 2015; Montavon et al.
2019) for MMAction2's CNNs: I3D/ResNet3d, SlowOnly/SlowFast, X3D (gates
as constants), C3D, R(2+1)D, CSN, and 2D ResNets (TSN, TSM). Our own implementation of the
iNNvestigate / zennit rules as modified gradients (:mod:`.lrp_rules`),
with canonizers (:mod:`.lrp_canonizers`): batch norm merged into the
convolution before it, residual sums split. zennit itself imports
torchvision at ``import zennit`` and is not used."""
import contextlib
import functools
from typing import (Any, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple)

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvTransposeNd

from ..errors import UnsupportedModelError
from ..registry import EXPLAINERS
from .attribution import Attribution
from .base import BaseExplainer
from .gradient_utils import frozen_parameters
from .lrp_canonizers import (RULE_LAYERS, FoldedBatchNorms,
                             MergedParameters, batchnorm_pairs, constant_gates,
                             folded_batchnorms, gate_modules,
                             instance_forwards, layer_fn, relus_after,
                             residual_blocks, split_residual_sums,
                             unsupported_layers)
from .lrp_rules import (FIRST_RULES, RULES, STABILIZER, Epsilon,
                        LRPOptionError, Rule, epsilon_relu, epsilon_scale,
                        make_rule, scale_gradient, swap_gradient)
from .targets import TargetSpec, pred_basis, resolve_targets
from .view_scorer import model_inputs


class _Layout(NamedTuple):
    """A model's modules as LRP sees them: ``key`` (their ids, in order),
    ``names``, ``{bn: conv}`` pairs, ``[(module, 'rule' | 'record' |
    'merged')]`` forward hooks, residual blocks, gates."""
    key: tuple
    names: Dict[nn.Module, str]
    pairs: Dict[nn.Module, nn.Module]
    hooked: List[Tuple[nn.Module, str]]
    blocks: list
    gates: List[nn.Module]
    relus: Dict[nn.Module, nn.Module]


@EXPLAINERS.register_module()
class LRP(BaseExplainer):
    """LRP of the view-averaged pre-softmax score ``s_c``.

    Every convolution / linear layer's backward is its rule's; ReLU, max
    pooling (winner takes all), average pooling and the view average pass
    relevance on as the gradient does (proportionally: the z-rule); a batch
    norm after a convolution is merged into it (the pair gets the rule
    with ``w' = a w``, ``b' = a (b - mu) + beta``); MMAction2's residual
    blocks add through the epsilon-stabilised z-rule. The input relevance
    ``R = x * d s_c / d x`` (modified gradients) is summed over colour
    channels: a signed map ``[B, V, T, H, W]`` with ``sum R = s_c`` minus
    what biases, batch-norm shifts and stabilisers absorb (conservation).
    Cost: one forward + one backward, which also give the scores,
    probabilities and targets (no clean pass: the rules change no value).
    A batch norm that follows its convolution is folded into it (``w'``,
    ``b'``, cached per pair while the parameters are unchanged: one copy
    of those weights): no batch norm pass either way. ``epsilon``: the
    gradient at every layer output ``z`` (and residual sum) times the
    constant ``z / stab(z)``: where a ReLU alone reads ``z`` (mmcv's
    ``ConvModule``, MMAction2's residual sums) the ReLU's node does it
    (one pass forward, three backward, nothing kept), elsewhere a tensor
    hook (three passes forward, one backward). ``gamma`` adds four
    evaluations of each layer it rules (forward, and backward through
    them), ``alpha_beta`` four (two when ``beta = 0``), ``zplus`` two,
    ``flat``/``wsquare`` two (one without a graph) for the first layer.

    Args:
        rule: ``'epsilon'`` (default), ``'gamma'``, ``'alpha_beta'``
            (``alpha``, ``beta``), ``'alpha1beta0'``, ``'alpha2beta1'``,
            ``'zplus'``: the rule of every convolution.
        epsilon: the epsilon rule's ``eps`` (``R_j = sum_k x_j w_jk /
            (z_k + eps sign z_k) R_k``); 0: gradient x input; also the
            stabiliser of the residual sums.
        gamma: the gamma rule's ``gamma``.
        alpha, beta: the ``alpha_beta`` rule's (``alpha - beta = 1``).
        first_rule: the rule of the layers that read the input (``None``:
            ``rule``), also ``'flat'`` or ``'wsquare'``.
        linear_rule: the rule of ``nn.Linear`` layers (the classifier;
            ``None``: ``rule``).
        canonize: merge batch norm, split residual sums, X3D's gates as
            constants (default ``True``); ``False``: batch norm passes
            relevance as the gradient does, residual sums by the
            unstabilised z-rule, gated models are n/a.
    """
    views_separable = True
    reports_probs = True
    additive_extras = ('relevance_sum', 'explained_score')

    def __init__(self, model: nn.Module, rule: str = 'epsilon',
                 epsilon: float = 1e-6, gamma: float = 0.25,
                 alpha: Optional[float] = None, beta: Optional[float] = None,
                 first_rule: Optional[str] = None,
                 linear_rule: Optional[str] = None, canonize: bool = True,
                 **kwargs):
        super().__init__(model, **kwargs)
        opts = dict(epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta)
        self.rule = make_rule(rule, **opts)
        self.first_rule = self.rule if first_rule is None else make_rule(
            first_rule, allowed=FIRST_RULES, **opts)
        self.linear_rule = self.rule if linear_rule is None else make_rule(
            linear_rule, **opts)
        self.rule_name, self.first_rule_name = rule, first_rule or rule
        self.linear_rule_name = linear_rule or rule
        self.epsilon, self.gamma = float(epsilon), float(gamma)
        self.alpha, self.beta = alpha, beta
        if not isinstance(canonize, bool):
            raise LRPOptionError(f'canonize must be true or false, got '
                                 f'{canonize!r}')
        self.canonize = canonize
        bad = unsupported_layers(self.model, gates=canonize)
        if bad:
            hint = ' (transformers: use attention_relevance)' if {
                'LayerNorm', 'MultiheadAttention', 'GELU'} & set(bad) else ''
            raise UnsupportedModelError(
                f'{self.name} covers convolutions, batch norm, ReLU, pooling '
                f'and linear layers; this model also has {", ".join(bad)}'
                + hint)
        self._leaf: Optional[Tensor] = None
        self._hooked: set = set()
        self._pending: Dict[nn.Module, tuple] = {}
        #: merged (folded) conv + batch norm parameters, cached per pair
        self._merged = MergedParameters()
        self._folds: Optional[FoldedBatchNorms] = None
        self._layout_cache: Optional[_Layout] = None
        self._relus: Dict[nn.Module, nn.Module] = {}
        self._deferred: Dict[nn.Module, tuple] = {}
        self._names: Dict[nn.Module, str] = {}
        #: names of the layers that read the input in the last call (they
        #: got ``first_rule``; SlowFast: both pathways' ``conv1``)
        self.first_layers: List[str] = []

    def settings(self) -> Dict[str, Any]:
        out = dict(rule=self.rule_name, epsilon=self.epsilon,
                   first_rule=self.first_rule_name,
                   linear_rule=self.linear_rule_name, canonize=self.canonize)
        if 'gamma' in (self.rule_name, self.first_rule_name,
                       self.linear_rule_name):
            out['gamma'] = self.gamma
        if self.alpha is not None or self.beta is not None:
            out.update(alpha=self.alpha, beta=self.beta)
        return out

    def clear_cache(self) -> None:
        """Forget the folded batch-norm weights (needed only after writing
        a convolution's or batch norm's tensors through ``.data``, which
        changes no version counter)."""
        self._merged.clear()

    # ----------------------------------------------------------- method
    def _attribute(self, inputs: Tensor, target: TargetSpec,
                   data_samples: Optional[Sequence]) -> Attribution:
        video = self.adapter.to_video(inputs).detach()
        x = video.clone().requires_grad_(True)
        with torch.enable_grad(), frozen_parameters(self.model), \
                self.rules_in_place(x):
            # the rules leave every value as it is: this one forward also
            # gives the scores, probabilities and targets (no clean pass)
            s, probs = self.adapter.scores_and_probs(
                model_inputs(self.adapter, x))
            self._settle_deferred()
            if self._folds is not None and self._folds.outputs:
                raise UnsupportedModelError(
                    f'{self.name}: a convolution merged with its batch norm '
                    'gave an output the batch norm did not read; use '
                    'canonize=False')
            scores, probs = s.detach().clone(), probs.detach().clone()
            targets = resolve_targets(target, scores, data_samples,
                                      pred_basis(self.adapter, probs))
            s = s.float()
            picked = s.gather(1, targets.view(-1, 1).to(s.device))[:, 0]
            grad, = torch.autograd.grad(picked.sum(), x)
        relevance = (x.detach() * grad).sum(2)  # [B, V, T, H, W]
        extras = dict(
            relevance_sum=relevance.flatten(1).sum(1).detach(),
            explained_score=picked.detach())
        return Attribution(relevance.float(), scores, targets,
                           extras=extras, probs=probs)

    # ------------------------------------------------------------ hooks
    @contextlib.contextmanager
    def rules_in_place(self, leaf: Tensor) -> Iterator[None]:
        """Forward hooks and instance forwards putting the rules in place
        (and the canonizers when :attr:`canonize`: residual sums split,
        gates constant, batch norms folded, ReLUs after epsilon pairs) for
        a forward of ``leaf``; call :meth:`_settle_deferred` after the
        forward. All removed on exit, also on failure."""
        layout = self._layout()
        pairs = layout.pairs
        handles = []
        self._leaf, self._hooked, self._pending = leaf, set(), {}
        self._names = layout.names
        self.first_layers = []
        try:
            with contextlib.ExitStack() as stack:
                folded = set()
                if self.canonize:
                    stack.enter_context(split_residual_sums(
                        self.model, self.epsilon or STABILIZER,
                        layout.blocks))
                    stack.enter_context(constant_gates(self.model,
                                                       layout.gates))
                    self._folds = stack.enter_context(folded_batchnorms(
                        pairs, self._merged, self._folded_pair_rule))
                    folded = set(self._folds.pairs)
                    folded.update(self._folds.pairs.values())
                    # the ReLU that alone reads a pair's output applies
                    # an epsilon pair's rule with it (one node)
                    self._relus = layout.relus
                    stack.enter_context(instance_forwards(
                        (relu, functools.partial(self._relu_forward, bn,
                                                 relu))
                        for bn, relu in self._relus.items()))
                for m, kind in layout.hooked:
                    if m in folded:  # the folded forward applies the rule
                        continue
                    if kind == 'rule':
                        hook = self._rule_hook
                    elif kind == 'record':
                        hook = self._record_hook
                    else:
                        hook = self._merged_hook(pairs[m])
                    handles.append(m.register_forward_hook(hook))
                yield
        finally:
            for h in handles:
                h.remove()
            self._leaf, self._hooked, self._pending = None, set(), {}
            self._names, self._folds = {}, None
            self._relus, self._deferred = {}, {}

    def _layout(self) -> '_Layout':
        """What :meth:`rules_in_place` hooks and patches, found once per
        model structure (the same module objects in the same order)."""
        named = list(self.model.named_modules())
        key = tuple(id(m) for _, m in named)
        if self._layout_cache is not None and self._layout_cache.key == key:
            return self._layout_cache
        pairs = batchnorm_pairs(self.model) if self.canonize else {}
        merged_convs = set(pairs.values())
        hooked = []
        for name, m in named:
            if name.startswith('data_preprocessor'):
                continue
            if isinstance(m, RULE_LAYERS) and not isinstance(
                    m, _ConvTransposeNd):
                hooked.append((m, 'record' if m in merged_convs else 'rule'))
            elif isinstance(m, _BatchNorm) and m in pairs:
                hooked.append((m, 'merged'))
        self._layout_cache = _Layout(
            key, {m: n for n, m in named}, pairs, hooked,
            residual_blocks(self.model) if self.canonize else [],
            gate_modules(self.model) if self.canonize else [],
            relus_after(pairs, self.model))
        return self._layout_cache

    def _choose(self, module: nn.Module, x: Tensor) -> Rule:
        if self._reads_input(x):
            self.first_layers.append(self._names.get(module, '?'))
            return self.first_rule
        return self.linear_rule if isinstance(module, nn.Linear) \
            else self.rule

    def _apply(self, rule: Rule, fn, x: Tensor, weight: Tensor,
               bias: Optional[Tensor], out: Tensor) -> Tensor:
        if isinstance(rule, Epsilon):  # out itself, gradient rescaled
            new = rule.rescaled(out)
        else:
            new = swap_gradient(out, rule.modified(fn, x, weight, bias, out))
        self._hooked.add(new.grad_fn)
        return new

    def _rule_hook(self, module: nn.Module, args, out: Tensor) -> Tensor:
        x = args[0]
        return self._apply(self._choose(module, x), layer_fn(module), x,
                           module.weight.detach(),
                           None if module.bias is None
                           else module.bias.detach(), out)

    def _record_hook(self, module, args, out):
        self._pending[module] = (args[0], out)

    def _merged_hook(self, conv: nn.Module):
        """The batch norm's output with the rule of ``bn(conv(x))`` as one
        layer (merged parameters; epsilon: the pair's own graph)."""
        def hook(bn, args, out):
            x, conv_out = self._pending.pop(conv, (None, None))
            return self._pair_rule(bn, conv, x, conv_out, args[0], out)
        return hook

    def _folded_pair_rule(self, bn: nn.Module, conv: nn.Module,
                          x: Optional[Tensor], z: Optional[Tensor],
                          given: Tensor) -> Tensor:
        """The folded batch norm's output: ``z`` (the folded convolution's
        output) with the pair's rule."""
        return self._pair_rule(bn, conv, x, z, given, z)

    def _pair_rule(self, bn: nn.Module, conv: nn.Module,
                   x: Optional[Tensor], conv_out: Optional[Tensor],
                   given: Tensor, out: Tensor) -> Tensor:
        """``out`` (``bn(conv(x))``) with the pair's rule; the batch norm
        must have been ``given`` the convolution's output."""
        if conv_out is None or given is not conv_out:
            raise UnsupportedModelError(
                f'{self.name}: batch norm {self._names.get(bn, "?")} does '
                'not directly follow its convolution; use canonize=False')
        rule = self._choose(conv, x)
        if isinstance(rule, Epsilon) and rule.eps > 0 and bn in self._relus:
            # its ReLU (the only reader) scales the gradient: no hook
            self._deferred[bn] = (out, rule.eps, out._version)
            self._hooked.add(out.grad_fn)
            return out
        if isinstance(rule, Epsilon):
            w = b = None  # the epsilon rule needs only out's graph
        else:
            w, b = self._merged(conv, bn)
        return self._apply(rule, layer_fn(conv), x, w, b, out)

    def _relu_forward(self, bn: nn.Module, relu: nn.Module,
                      x: Tensor) -> Tensor:
        """The ReLU that alone reads a pair's output: :func:`epsilon_relu`
        of an epsilon pair's output; of anything else: the ReLU's own
        forward."""
        entry = self._deferred.get(bn)
        if entry is not None and entry[0] is x:
            del self._deferred[bn]
            return epsilon_relu(x, entry[1])
        return type(relu).forward(relu, x)

    def _settle_deferred(self) -> None:
        """Pair outputs whose ReLU did not run (a ``ConvModule`` called
        with ``activate=False``): the gradient hook after all, when the
        output is unchanged since."""
        for bn, (z, eps, version) in list(self._deferred.items()):
            if z._version != version:
                raise UnsupportedModelError(
                    f'{self.name}: the output of batch norm '
                    f'{self._names.get(bn, "?")} was changed in place '
                    'before its ReLU; use canonize=False')
            scale_gradient(z, epsilon_scale(z, eps))
        self._deferred = {}

    def _reads_input(self, x: Tensor) -> bool:
        """Does ``x`` come from the explained input without passing a
        layer that has a rule (a first layer, e.g. both SlowFast
        pathways')?"""
        if x is self._leaf:
            return True
        stack, seen = [x.grad_fn], set()
        while stack:
            fn = stack.pop()
            if fn is None or fn in seen or fn in self._hooked:
                continue
            seen.add(fn)
            if getattr(fn, 'variable', None) is self._leaf:
                return True
            stack.extend(f for f, _ in fn.next_functions)
        return False


__all__ = ['LRP', 'RULES', 'FIRST_RULES']
