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

Modules: :mod:`.tracer` (channel origins from the autograd graph),
:mod:`.recorder` (forward hooks), :mod:`.walker` (the back-step and the
tubes), :mod:`.method` (the registered explainer).
"""
from .method import PAPER_THETAS, ClassFeaturePyramid
from .tracer import trace_channels
from .walker import Walker

__all__ = ['PAPER_THETAS', 'ClassFeaturePyramid', 'Walker', 'trace_channels']
