"""Test helpers shipped with mmxai (as mmaction.testing)."""
