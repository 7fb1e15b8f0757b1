"""Errors that mean "the configuration is wrong" (reported in one line, before any work is done)."""


class ConfigError(ValueError):
    """An invalid configuration value or combination; the message names the key and the valid choices."""
