"""Shared test helpers."""

from algorithms.builder import compose_config

__all__ = ["compose_config"]
