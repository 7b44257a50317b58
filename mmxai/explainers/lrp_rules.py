"""LRP rules as modified gradients (the iNNvestigate / zennit family).

Relevance is carried as ``g = R / a`` (relevance per unit of activation):
a layer ``z = f(x; W, b)`` whose output relevance is ``R_k = z_k g_k`` hands
its input ``g_in`` with ``R_in = x * g_in``. Each rule builds a tensor
``mod`` from ``x`` whose *gradient* is that backward map (its value is never
used: the layer's output stays ``z`` bit for bit, see :func:`swap_gradient`);
the input relevance of the whole network is then ``x * d s_c / d x``.

Rules (``z^+ = sum_j (x_j w_jk)^+``, ``stab(z) = z + eps sign(z)`` with
``sign(0) = 1``):

* ``epsilon``: ``R_j = sum_k x_j w_jk / stab(z_k) R_k`` (``mod = z *
  [z / stab(z)]``); ``eps -> 0`` without biases: gradient x input.
* ``alpha_beta``: ``R_j = sum_k (alpha (x_j w_jk)^+ / z_k^+ - beta
  (x_j w_jk)^- / z_k^-) R_k``, ``alpha - beta = 1``; positive and negative
  inputs split as zennit does (``(xw)^+ = x^+ w^+ + x^- w^-``), biases
  split with the weights. ``alpha1beta0`` and ``alpha2beta1`` are named.
* ``zplus``: ``alpha1beta0`` without the bias.
* ``gamma``: ``R_j = sum_k x_j (w_jk + gamma w_jk^+) / stab(sum_j x_j (w_jk +
  gamma w_jk^+) + b_k + gamma b_k^+) R_k`` (Montavon et al. 2019) for
  non-negative inputs and ``z_k > 0``; signed inputs / outputs as the
  generalised rule (Andeol et al. 2021, zennit's), see :class:`Gamma`.
* ``flat`` / ``wsquare`` (first layer only): ``R_j = sum_k w'_jk /
  sum_j w'_jk R_k`` with ``w' = 1`` / ``w' = w^2`` (padding counted as
  absent); the input values do not enter.
"""
from typing import Callable, Optional

import torch
from torch import Tensor

from ..errors import MMXAIError

#: ``fn(x, weight, bias) -> z``: the layer's affine map with given params.
LayerFn = Callable[[Tensor, Tensor, Optional[Tensor]], Tensor]

#: Stabiliser of the denominators of the rules other than ``epsilon``.
STABILIZER = 1e-6
#: Rules for any layer / only for the first layer(s) (the input's).
RULES = ('epsilon', 'gamma', 'alpha_beta', 'alpha1beta0', 'alpha2beta1',
         'zplus')
FIRST_RULES = RULES + ('flat', 'wsquare')


def stabilize(z: Tensor, eps: float) -> Tensor:
    """``z + eps * sign(z)`` with ``sign(0) = 1`` (never 0 for eps > 0)."""
    return torch.where(z >= 0, z + eps, z - eps)


def swap_gradient(value: Tensor, mod: Tensor) -> Tensor:
    """``value`` exactly (``value + (mod - mod) = value + 0``), with the
    gradient of ``mod``: a layer's forward unchanged, its backward the
    rule's."""
    return value.detach() + (mod - mod.detach())


def epsilon_scale(z: Tensor, eps: float) -> Tensor:
    """``s = z / stab(z)`` as ``|z| / (|z| + eps)`` (no graph): the same
    floats (``z - eps = -(|z| + eps)`` and the quotient of two negatives
    are exact mirrors in IEEE arithmetic; ``z = -0`` gives ``+0`` for
    ``-0``), in three passes over ``z`` instead of five."""
    a = z.detach().abs()
    return a.div_(a + eps)


def scale_gradient(z: Tensor, scale: Tensor) -> Tensor:
    """``z`` itself (the forward untouched, no new node) whose gradient
    is multiplied by the constant ``scale`` (a tensor hook; it sees the
    gradient of ``z``'s value even when an in-place ReLU follows)."""
    z.register_hook(scale.mul)
    return z


class _EpsilonReLU(torch.autograd.Function):
    """``r = relu(z)`` whose backward is ReLU's times ``z / stab(z)``:
    ``g_z = g_r * r / (r + eps)`` (``r = z`` where ``z > 0``; elsewhere
    ReLU's gradient is 0 either way). Saves only ``r``, which the next
    layer keeps anyway."""

    @staticmethod
    def forward(ctx, z: Tensor, eps: float) -> Tensor:
        r = torch.relu(z)
        ctx.save_for_backward(r)
        ctx.eps = eps
        return r

    @staticmethod
    def backward(ctx, grad: Tensor):
        r, = ctx.saved_tensors
        d = r + ctx.eps
        return torch.div(r, d, out=d).mul_(grad), None


def epsilon_relu(z: Tensor, eps: float) -> Tensor:
    """``relu(z)``, the gradient at ``z`` times ``z / stab(z)`` (what
    :func:`scale_gradient` before a ReLU gives, float for float up to the
    sign of zeros) in one node: no scale tensor kept, one pass forward,
    three backward."""
    return _EpsilonReLU.apply(z, float(eps))


def _safe_reciprocal(x: Tensor) -> Tensor:
    return torch.where(x == 0, torch.zeros_like(x), 1.0 / torch.where(
        x == 0, torch.ones_like(x), x))


class Rule:
    """One LRP rule: :meth:`modified` builds ``mod`` for a layer."""
    name = 'rule'

    def __init__(self, eps: float = 1e-6):
        self.eps = float(eps)

    def modified(self, fn: LayerFn, x: Tensor, weight: Tensor,
                 bias: Optional[Tensor], z: Tensor) -> Tensor:
        """``mod`` whose gradient w.r.t. ``x`` maps the output's ``g`` to
        the input's. ``z``: the layer's output with its graph from ``x``
        (Jacobian ``weight``); ``weight``/``bias`` the layer's parameters
        (batch norm merged in)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.name})'


class Epsilon(Rule):
    """``mod = z * [z / stab(z)]`` (no extra forward: ``z``'s own graph).

    :meth:`rescaled` is the same backward without ``mod``: the gradient at
    ``z`` times the constant ``z / stab(z)`` (what ``mod``'s product node
    does), so LRP-epsilon is one forward + one backward."""
    name = 'epsilon'

    def modified(self, fn, x, weight, bias, z):
        if self.eps == 0:  # the plain gradient (0/0 never formed)
            return z
        zd = z.detach()
        return z * (zd / stabilize(zd, self.eps))

    def rescaled(self, z: Tensor) -> Tensor:
        """``z`` itself, its gradient times ``z / stab(z)`` (``eps = 0``:
        the plain gradient)."""
        if self.eps == 0:
            return z
        return scale_gradient(z, epsilon_scale(z, self.eps))


class AlphaBeta(Rule):
    """``mod = alpha z^+ [z / z^+] - beta z^- [z / z^-]`` (4 extra layer
    evaluations, 2 when ``beta = 0``)."""

    def __init__(self, alpha: float = 1.0, beta: float = 0.0,
                 bias: bool = True, eps: float = 1e-6):
        super().__init__(eps)
        if beta < 0 or abs(alpha - beta - 1.0) > 1e-9:
            raise LRPOptionError('alpha_beta needs alpha - beta = 1 and '
                                 f'beta >= 0, got alpha={alpha}, beta={beta}')
        self.alpha, self.beta, self.bias = float(alpha), float(beta), bias
        self.name = f'alpha{alpha:g}beta{beta:g}' if bias else 'zplus'

    def modified(self, fn, x, weight, bias, z):
        zd = z.detach()
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        wp, wn = weight.clamp(min=0), weight.clamp(max=0)
        b = bias if self.bias else None
        bp = None if b is None else b.clamp(min=0)
        bn = None if b is None else b.clamp(max=0)
        zp = fn(xp, wp, bp) + fn(xn, wn, None)
        mod = self.alpha * zp * (zd / stabilize(zp.detach(), self.eps))
        if self.beta:
            zn = fn(xp, wn, bn) + fn(xn, wp, None)
            mod = mod - self.beta * zn * (
                zd / stabilize(zn.detach(), self.eps))
        return mod


class Gamma(Rule):
    """Generalised gamma (Andeol et al. 2021, zennit's ``Gamma``): for
    ``z > 0`` the positive contributions are amplified, ``z^{+,gamma} =
    f(x^+; w + gamma w^+, b + gamma b^+) + f(x^-; w + gamma w^-)``, for
    ``z < 0`` the negative ones, ``z^{-,gamma} = f(x^+; w + gamma w^-, b +
    gamma b^-) + f(x^-; w + gamma w^+)``; ``R_j`` is ``x_j``'s share of
    its term. Non-negative inputs, ``z > 0``: Montavon et al.'s rule."""
    name = 'gamma'

    def __init__(self, gamma: float = 0.25, eps: float = 1e-6):
        super().__init__(eps)
        if gamma < 0:
            raise LRPOptionError(f'gamma must be >= 0, got {gamma}')
        self.gamma = float(gamma)

    def modified(self, fn, x, weight, bias, z):
        zd = z.detach()
        xp, xn = x.clamp(min=0), x.clamp(max=0)
        g = self.gamma
        up = weight + g * weight.clamp(min=0)
        down = weight + g * weight.clamp(max=0)
        bp = None if bias is None else bias + g * bias.clamp(min=0)
        bn = None if bias is None else bias + g * bias.clamp(max=0)
        pos = fn(xp, up, bp) + fn(xn, down, None)
        neg = fn(xp, down, bn) + fn(xn, up, None)
        wp = (zd * (zd > 0)) / stabilize(pos.detach(), self.eps)
        wn = (zd * (zd < 0)) / stabilize(neg.detach(), self.eps)
        return pos * wp + neg * wn


class _InputFree(Rule):
    """``R_j = sum_k w'_jk / sum_j w'_jk R_k``: through a marker ``x *
    [1/x]`` so that ``x * grad`` is the share (inputs exactly 0 get none)."""

    def weights(self, weight: Tensor) -> Tensor:
        raise NotImplementedError

    def modified(self, fn, x, weight, bias, z):
        w = self.weights(weight.detach())
        marker = x * _safe_reciprocal(x.detach())
        denom = fn(torch.ones_like(x.detach()), w, None)
        return fn(marker, w, None) * (z.detach() /
                                      stabilize(denom, self.eps))


class Flat(_InputFree):
    name = 'flat'

    def weights(self, weight):
        return torch.ones_like(weight)


class WSquare(_InputFree):
    name = 'wsquare'

    def weights(self, weight):
        return weight * weight


class LRPOptionError(MMXAIError):
    """An LRP rule or its parameter is not valid."""


def make_rule(name: str, epsilon: float = 1e-6, gamma: float = 0.25,
              alpha: Optional[float] = None, beta: Optional[float] = None,
              allowed=RULES) -> Rule:
    """A :class:`Rule` from its name (``'alpha_beta'`` takes ``alpha``,
    ``beta``; default 1, 0)."""
    if name not in allowed:
        raise LRPOptionError(f"unknown LRP rule {name!r}: use "
                             f"{', '.join(allowed)}")
    if epsilon is None or not epsilon >= 0:
        raise LRPOptionError(f'epsilon must be >= 0, got {epsilon}')
    stab = STABILIZER
    if name == 'epsilon':
        return Epsilon(epsilon)
    if name == 'gamma':
        return Gamma(gamma, stab)
    if name == 'zplus':
        return AlphaBeta(1.0, 0.0, bias=False, eps=stab)
    if name == 'alpha1beta0':
        return AlphaBeta(1.0, 0.0, eps=stab)
    if name == 'alpha2beta1':
        return AlphaBeta(2.0, 1.0, eps=stab)
    if name == 'alpha_beta':
        a = 1.0 if alpha is None else float(alpha)
        b = a - 1.0 if beta is None else float(beta)
        return AlphaBeta(a, b, eps=stab)
    return Flat(stab) if name == 'flat' else WSquare(stab)
