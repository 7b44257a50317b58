"""Toolbox integration: hooks registered in ``mmxai.registry.HOOKS``."""
from .explain_hook import ExplainHook

__all__ = ['ExplainHook']
