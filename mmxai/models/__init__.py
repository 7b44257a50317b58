"""Recognizer parts MMAction2 lacks, registered in MMAction2's ``MODELS``
(so ``tools/train.py`` / ``tools/test.py`` build them by name after
``custom_imports=['mmxai']``): the causal multi-stage TCN head of two-stage
surgical phase recognizers, and its feature-sequence attributions; the
conv-stem VideoMAE ViT and Video Swin of the localisation benchmark."""
from .phase_tcn import (CausalMSTCNHead, FeatureSequence,
                        feature_occlusion, feature_integrated_gradients)
from .conv_stem_vit import ConvStemVisionTransformer, conv_stem
from .conv_stem_swin import ConvStemSwinTransformer3D

__all__ = ['CausalMSTCNHead', 'FeatureSequence', 'feature_occlusion',
           'feature_integrated_gradients', 'ConvStemVisionTransformer',
           'ConvStemSwinTransformer3D', 'conv_stem']
