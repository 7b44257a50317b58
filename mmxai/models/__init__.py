"""Recognizer parts MMAction2 lacks, registered in MMAction2's ``MODELS``
(so ``tools/train.py`` / ``tools/test.py`` build them by name after
``custom_imports=['mmxai']``): the causal multi-stage TCN head of two-stage
surgical phase recognizers, and its feature-sequence attributions."""
from .phase_tcn import (CausalMSTCNHead, FeatureSequence,
                        feature_occlusion, feature_integrated_gradients)

__all__ = ['CausalMSTCNHead', 'FeatureSequence', 'feature_occlusion',
           'feature_integrated_gradients']
