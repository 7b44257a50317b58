"""Checks for explainer options (each raises :class:`MMXAIError`)."""
from typing import Any, Sequence, Tuple

from ..errors import MMXAIError

#: What perturbation and gradient methods score: softmax or pre-softmax.
SCORES = ('prob', 'logit')


def check_choice(name: str, value: Any, choices: Sequence) -> None:
    """Raise when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise MMXAIError(f"unknown {name} '{value}': use one of "
                         f"{', '.join(map(str, choices))}")


def check_positive(name: str, value: Any, minimum: float = 1) -> None:
    """Raise when ``value`` is None or below ``minimum``."""
    if value is None or value < minimum:
        raise MMXAIError(f'{name} must be at least {minimum}, got {value}')


def triple(name: str, value: Any, default: Sequence[int]) -> Tuple[int, ...]:
    """An int or ``(t, h, w)`` option -> a 3-tuple of positive ints."""
    if value is None:
        value = default
    if isinstance(value, (int, float)):
        value = (value, ) * 3
    value = tuple(int(v) for v in value)
    if len(value) != 3 or min(value) < 1:
        raise MMXAIError(f'{name} must be an int or (t, h, w) of positive '
                         f'ints, got {value}')
    return value
