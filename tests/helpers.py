"""Shared test helpers."""

from train import compose_config

__all__ = ["compose_config"]
