"""Splitting many forwards into batches."""
from typing import Iterator, Tuple


def batches(total: int, batch_size: int) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of consecutive batches covering ``range(total)``."""
    for start in range(0, total, batch_size):
        yield start, min(start + batch_size, total)
