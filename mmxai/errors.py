"""User-facing errors: each carries a one-line message the CLI prints as is."""


class MMXAIError(Exception):
    """Base class for errors a user can cause and fix (bad input, options)."""


class InputError(MMXAIError):
    """A missing, unreadable or corrupt video, config or annotation."""


class ConfigError(MMXAIError):
    """A config that lacks something mmxai needs (e.g. a test pipeline)."""


class LayerNotFoundError(MMXAIError):
    """A target layer name that the model does not have."""


class TargetError(MMXAIError):
    """A target class out of range, or a 'gt' target without labels."""


class UnsupportedModelError(MMXAIError):
    """A model, head or layer kind a method is not defined for."""


class UntrustedCheckpointError(MMXAIError):
    """A checkpoint that needs unpickling types outside the allowlist."""


class CheckpointMismatchError(InputError):
    """A checkpoint whose keys or shapes do not fit the model."""


class OutputError(MMXAIError):
    """An output folder that cannot be created or written."""
