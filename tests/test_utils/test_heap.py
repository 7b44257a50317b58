"""``retained_heap``: freed CPU memory is reused inside the block, and
glibc's settings are put back after it, also on errors.

Page-fault counts depend on the heap's layout, which earlier tests in the
same process change (a large free block left in the heap is reused even
without ``retained_heap``), so the measurements run in a fresh interpreter.
"""
import json
import subprocess
import sys

import pytest

from mmxai.utils import heap

needs_glibc = pytest.mark.skipif(not heap.heap_retention_available(),
                                 reason='Linux/glibc only')

_PROBE = r'''
import json, resource, torch
from mmxai.utils import heap

def faults(rounds):
    """Minor page faults of allocating, touching and freeing 96 MiB (above
    glibc's 32 MiB mmap ceiling) ``rounds`` times."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(rounds):
        t = torch.empty(24 * 1024 * 1024)
        t.fill_(1.0)
        del t
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

out = dict(outside=faults(6))
try:
    with heap.retained_heap() as acted:
        out['acted'] = acted
        # warm-up: torch's 64-byte-aligned requests need a little more than
        # a freed block, so the heap grows for a few rounds (how many
        # depends on its layout) until a round reuses freed pages
        out['warm'] = [faults(1) for _ in range(12)]
        out['inside'] = faults(6)
        with heap.retained_heap():
            out['depth_nested'] = heap._depth
        out['depth_inner_exit'] = heap._depth
        raise RuntimeError('inside')
except RuntimeError:
    pass
out['depth_after'] = heap._depth
out['after'] = faults(2)
print(json.dumps(out))
'''


@needs_glibc
def test_big_blocks_are_reused_inside_and_mapped_again_after():
    res = json.loads(subprocess.run(
        [sys.executable, '-c', _PROBE], capture_output=True, text=True,
        check=True).stdout.strip().splitlines()[-1])
    assert res['acted']
    # outside: every round maps and faults its 24,576 pages afresh
    assert res['outside'] > 6 * 20000
    # inside, once warm: the pages are reused
    assert min(res['warm']) < 1000
    assert res['inside'] < res['outside'] / 3
    # nested blocks act once; the outer one ends on an exception
    assert (res['depth_nested'], res['depth_inner_exit'],
            res['depth_after']) == (2, 1, 0)
    # mmap is back (and the free pages were returned): big blocks fault
    # again after the block
    assert res['after'] > 2 * 20000


def test_disabled_by_environment_and_flag(monkeypatch):
    monkeypatch.setenv('MMXAI_RETAIN_HEAP', '0')
    assert not heap.heap_retention_available()
    with heap.retained_heap() as acted:
        assert not acted
        assert heap._depth == 0
    monkeypatch.delenv('MMXAI_RETAIN_HEAP')
    with heap.retained_heap(enabled=False) as acted:
        assert not acted
