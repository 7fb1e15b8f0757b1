"""Where the repository keeps what its packages share on disk, so that a package reaching into another's folder
does it through this import (``tests/test_layering.py`` checks that no other module builds such a path)."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
#: the Hydra configs (``conf/config.yaml`` and its groups)
CONF_DIR = REPO_ROOT / "conf"
#: published runs (``make publish``, ``make reproduce``): what a fresh clone's analysis draws
SHIPPED_RESULTS = REPO_ROOT / "benchmarks" / "results"
#: ``make reproduce`` manifests, one per paper figure or table
REPRODUCE_MANIFESTS = REPO_ROOT / "benchmarks" / "reproduce"
#: the README, whose shipped-results block ``analysis.publish`` regenerates
README = REPO_ROOT / "README.md"
#: the page of shipped results (``python -m analysis.publish --index``)
RESULTS_PAGE = REPO_ROOT / "docs" / "results.md"
