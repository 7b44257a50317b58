"""``retained_heap``: freed CPU memory is reused inside the block, and
glibc's settings are put back after it, also on errors."""
import resource

import pytest
import torch

from mmxai.utils import heap

needs_glibc = pytest.mark.skipif(not heap.heap_retention_available(),
                                 reason='Linux/glibc only')


def _faults_of_big_allocations(rounds: int = 4) -> int:
    """Minor page faults of allocating, touching and freeing 96 MiB
    (above glibc's 32 MiB mmap ceiling) ``rounds`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        t = torch.empty(24 * 1024 * 1024)  # 96 MiB of float32
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@needs_glibc
def test_big_blocks_are_reused_inside_the_block():
    outside = _faults_of_big_allocations(6)
    with heap.retained_heap() as acted:
        assert acted
        _faults_of_big_allocations(2)  # first touch of the heap pages
        inside = _faults_of_big_allocations(6)
    # outside: every round re-faults its 24,576 pages; inside: the pages
    # are reused (a free heap block released earlier by malloc_trim may
    # fault once more)
    assert outside > 6 * 20000
    assert inside < outside / 3


@needs_glibc
def test_nested_and_restored_on_error():
    with pytest.raises(RuntimeError):
        with heap.retained_heap():
            with heap.retained_heap():
                assert heap._depth == 2
            assert heap._depth == 1
            raise RuntimeError('inside')
    assert heap._depth == 0
    # mmap is back: big blocks fault again after the block
    assert _faults_of_big_allocations(2) > 2 * 20000


def test_disabled_by_environment_and_flag(monkeypatch):
    monkeypatch.setenv('MMXAI_RETAIN_HEAP', '0')
    assert not heap.heap_retention_available()
    with heap.retained_heap() as acted:
        assert not acted
        assert heap._depth == 0
    monkeypatch.delenv('MMXAI_RETAIN_HEAP')
    with heap.retained_heap(enabled=False) as acted:
        assert not acted
