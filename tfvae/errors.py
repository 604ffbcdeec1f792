"""Errors a user can act on: each message names the bad value and the fix."""


class TfvaeError(Exception):
    """Base class of the errors tfvae raises for bad user input."""


class DataError(TfvaeError, ValueError):
    """A dataset that is missing, malformed or out of range."""


class RunError(TfvaeError, ValueError):
    """A run directory that is missing, incomplete or would be overwritten."""


class ConfigError(TfvaeError, ValueError):
    """A training or command configuration value out of its allowed range."""


class ExportError(TfvaeError, ValueError):
    """An export that cannot be written as asked."""
