"""The manifest of a reproduced figure: ``benchmarks/reproduce/<name>.yaml``, read and checked.

Every problem is one :class:`ManifestError` naming the file and the key. The keys (see the shipped manifests)::

    title: "..."                        # the report's heading
    paper: "..."                        # what the paper states, quoted in the report
    checkpoint_interval_frames: 1000000 # how much a killed run can lose
    final_meta_test_episodes: 30        # the final meta-test's episodes (eval.final_episodes), optional
    panels:                             # one figure per meta-test protocol: never two protocols on one axis
      <key>: {title, protocol (text), references (a reference file's settings block), include (labels of
              other panels drawn here too), pooled_episodes (learning curves also show their mean)}
    runs:                               # what the campaign trains
      - {label, algo, env, seeds: [..], overrides: [Hydra overrides], panel: <key>}
    per_seed:                           # a table of every seed of a label
      - {label, title, reference (a reference line, e.g. bayes_optimal), tolerance (0.1), setting (the
         reference file's block), episodes (shown), goal_angle_bins (the arc of goals found, PointRobot)}
    beliefs:                            # GridWorld pictures of one rollout, a row per label
      - {name, title, labels, seed, goal: [x, y], episodes, kind: cells (fig. 7) | latent (fig. 10)}
    claims:                             # the paper's statements, each with our numbers and a verdict
      - {text, label, metric: return | success, episode or episodes (their mean), last (3), meta_test: training
         (default: the last meta-tests during training) | final (the final meta-test), relative_to (episodes:
         the value as a fraction of the seed's own in those), and one or more of: at_least (a number),
         at_least_episode, above_episode (strictly above), near_label + tolerance, better_than (a label;
         one-sided Mann-Whitney U over the seeds)}
      - {text, label, belief: <a beliefs entry's name>, holds_if: [conditions on numbers read off its rollouts,
         e.g. "seen <= 0.1", "seen > varibad_2e7:seen" (analysis.belief_stats)]}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from analysis.belief_stats import parse_condition
from records import locations

MANIFESTS = locations.REPRODUCE_MANIFESTS
RUN_KEYS = {"label", "algo", "env", "seeds", "overrides", "panel"}
MANIFEST_KEYS = {"title", "paper", "checkpoint_interval_frames", "final_meta_test_episodes", "runs", "panels",
                 "claims", "beliefs", "per_seed"}
BELIEF_KEYS = {"name", "title", "labels", "seed", "goal", "episodes", "kind"}
#: a protocol panel: its title, the protocol's description and reference lines, labels of other panels drawn in it,
#: and the episodes its learning curves also show pooled (their mean)
PANEL_KEYS = {"title", "protocol", "references", "include", "pooled_episodes"}
#: a per-seed table (``analysis.seed_report.per_seed_table``)
PER_SEED_KEYS = {"label", "title", "reference", "tolerance", "setting", "episodes", "goal_angle_bins"}
#: a claim (``analysis.claims.check_claim``): its text, the label it is about, and what it compares
CLAIM_KEYS = {"text", "label", "metric", "episode", "episodes", "last", "env", "meta_test", "relative_to", "at_least",
              "at_least_episode", "above_episode", "near_label", "tolerance", "better_than", "belief", "holds_if"}
#: the goal of a belief picture unless the manifest names one (far from the start: the search shows in the belief)
BELIEF_GOAL = (3, 4)


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class RunSpec:
    """One run of a campaign: a seed of one labelled configuration."""

    label: str
    algo: str
    env: str
    seed: int
    overrides: tuple[str, ...]
    panel: str


@dataclass
class Manifest:
    name: str
    path: Path
    data: dict[str, Any]
    runs: list[RunSpec]

    @property
    def checkpoint_interval(self) -> int:
        return int(self.data.get("checkpoint_interval_frames", 250_000))

    @property
    def final_episodes(self) -> int | None:
        value = self.data.get("final_meta_test_episodes")
        return None if value is None else int(value)


def manifest_names() -> list[str]:
    return sorted(p.stem for p in MANIFESTS.glob("*.yaml"))


def load_manifest(name_or_path: str | Path) -> Manifest:
    """A manifest by name (``benchmarks/reproduce/<name>.yaml``) or path, checked."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        path = MANIFESTS / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ManifestError(f"no manifest {name_or_path!r}; the figures are: {', '.join(manifest_names())}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list) or not data["runs"]:
        raise ManifestError(f"{path}: needs a non-empty list 'runs'")
    unknown = set(data) - MANIFEST_KEYS
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; allowed: "
                            f"{', '.join(sorted(MANIFEST_KEYS))}")
    panels = data.get("panels") or {}
    for key, panel in panels.items():
        if not isinstance(panel, dict) or set(panel) - PANEL_KEYS:
            raise ManifestError(f"{path}: panels.{key} must be a mapping of {', '.join(sorted(PANEL_KEYS))}")
    runs: list[RunSpec] = []
    for i, entry in enumerate(data["runs"]):
        where = f"{path}: runs[{i}]"
        if not isinstance(entry, dict):
            raise ManifestError(f"{where} is not a mapping")
        missing = {"label", "algo", "env", "seeds"} - set(entry)
        if missing:
            raise ManifestError(f"{where} lacks {', '.join(sorted(missing))}")
        if set(entry) - RUN_KEYS:
            raise ManifestError(f"{where}: unknown key(s) {', '.join(sorted(set(entry) - RUN_KEYS))}; allowed: "
                                f"{', '.join(sorted(RUN_KEYS))}")
        seeds = entry["seeds"]
        if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds)):
            raise ManifestError(f"{where}: seeds must be a list of integers >= 0, got {seeds!r}")
        overrides = entry.get("overrides") or []
        if not all(isinstance(o, str) and "=" in o for o in overrides):
            raise ManifestError(f"{where}: overrides must be Hydra overrides key=value, got {overrides!r}")
        panel = str(entry.get("panel", "main"))
        if panels and panel not in panels:
            raise ManifestError(f"{where}: panel {panel!r} is not one of the manifest's panels ({', '.join(panels)})")
        for seed in seeds:
            runs.append(RunSpec(str(entry["label"]), str(entry["algo"]), str(entry["env"]), int(seed),
                                tuple(overrides), panel))
    keys = [(r.env, r.label, r.seed) for r in runs]
    if len(set(keys)) != len(keys):
        raise ManifestError(f"{path}: a (env, label, seed) appears twice; give each configuration its own label")
    _check_beliefs(path, data.get("beliefs") or [], runs)
    labels = {r.label for r in runs}
    _check_entries(path, "claims", data.get("claims") or [], {"text", "label"}, CLAIM_KEYS, labels,
                   ("label", "near_label", "better_than"))
    _check_belief_claims(path, data.get("claims") or [], data.get("beliefs") or [])
    for i, claim in enumerate(data.get("claims") or []):
        if claim.get("meta_test", "training") not in ("training", "final"):
            raise ManifestError(f"{path}: claims[{i}]: meta_test must be training (the last meta-tests during "
                                f"training) or final (the final meta-test), got {claim['meta_test']!r}")
        if claim.get("meta_test") == "final" and not data.get("final_meta_test_episodes"):
            raise ManifestError(f"{path}: claims[{i}]: meta_test: final needs final_meta_test_episodes (the runs' "
                                "final meta-test)")
    _check_entries(path, "per_seed", data.get("per_seed") or [], {"label"}, PER_SEED_KEYS, labels, ("label",))
    return Manifest(path.stem, path, data, runs)


def _check_beliefs(path: Path, entries: list[Any], runs: list[RunSpec]) -> None:
    """``beliefs``: pictures of the belief along one GridWorld rollout, one row per label (one seed each)."""
    for i, entry in enumerate(entries):
        where = f"{path}: beliefs[{i}]"
        if not isinstance(entry, dict) or {"name", "labels", "seed"} - set(entry) or set(entry) - BELIEF_KEYS:
            raise ManifestError(f"{where} needs name, labels and seed (optional: title, goal, episodes, kind)")
        if entry.get("kind", "cells") not in ("cells", "latent"):
            raise ManifestError(f"{where}: kind must be cells (the decoder's belief per cell, fig. 7) or latent (the "
                                f"posterior's mean and std, fig. 10), got {entry['kind']!r}")
        for label in entry["labels"]:
            spec = next((r for r in runs if r.label == label and r.seed == entry["seed"]), None)
            if spec is None or spec.env != "gridworld":
                raise ManifestError(f"{where}: no GridWorld run {label!r} with seed {entry['seed']} in the manifest")


def _check_belief_claims(path: Path, claims: list[dict[str, Any]], beliefs: list[dict[str, Any]]) -> None:
    """A claim about a belief picture names it (``belief``) and says when it holds (``holds_if``: conditions on the
    statistics of its kind, about labels the picture shows)."""
    pictures = {str(entry["name"]): entry for entry in beliefs}
    for i, claim in enumerate(claims):
        where = f"{path}: claims[{i}]"
        if ("belief" in claim) != ("holds_if" in claim):
            raise ManifestError(f"{where}: belief and holds_if go together (a claim about a belief picture)")
        if "belief" not in claim:
            continue
        entry = pictures.get(str(claim["belief"]))
        if entry is None:
            raise ManifestError(f"{where}: belief {claim['belief']!r} is not a beliefs entry's name "
                                f"({', '.join(pictures) or 'none'})")
        conditions = claim["holds_if"]
        if not isinstance(conditions, list) or not conditions:
            raise ManifestError(f"{where}: holds_if must be a non-empty list of conditions, e.g. [\"seen <= 0.1\"]")
        for text in conditions:
            try:
                condition = parse_condition(text, str(entry.get("kind", "cells")))
            except ValueError as exc:
                raise ManifestError(f"{where}: {exc}") from None
            outside = condition.labels(str(claim["label"])) - set(entry["labels"])
            if outside:
                raise ManifestError(f"{where}: condition {text!r} is about {', '.join(sorted(outside))}, not a label "
                                    f"of the picture {entry['name']!r} ({', '.join(entry['labels'])})")


def _check_entries(path: Path, section: str, entries: list[Any], required: set[str], allowed: set[str],
                   labels: set[str], label_keys: tuple[str, ...]) -> None:
    """Entries of ``section`` (``claims``, ``per_seed``): the ``required`` keys, no key outside ``allowed``, and
    every value of ``label_keys`` a label of the manifest's runs."""
    for i, entry in enumerate(entries):
        where = f"{path}: {section}[{i}]"
        if not isinstance(entry, dict) or required - set(entry):
            raise ManifestError(f"{where} needs {' and '.join(sorted(required))}")
        if set(entry) - allowed:
            raise ManifestError(f"{where}: unknown key(s) {', '.join(sorted(set(entry) - allowed))}; allowed: "
                                f"{', '.join(sorted(allowed))}")
        for key in label_keys:
            if key in entry and entry[key] not in labels:
                raise ManifestError(f"{where}: {key} {entry[key]!r} is not a label of the manifest's runs "
                                    f"({', '.join(sorted(labels))})")
