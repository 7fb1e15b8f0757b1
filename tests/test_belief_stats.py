"""Numbers read off a belief trace for the paper's statements about its belief pictures (figs. 7 and 10), the
conditions a manifest states them with, and the verdicts the report gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml

from analysis.belief_stats import evaluate, parse_condition, trace_statistics
from analysis.claims import check_belief_claim
from launch.manifest import ManifestError, load_manifest


def _trace(reach_goal: bool = True) -> dict[str, np.ndarray]:
    """A 3 x 3 grid, H = 3, two episodes: right, right, up into the goal (2, 1) at step 3, and again in episode 2
    (or, ``reach_goal=False``, right, right, into the wall). Before the goal the decoder gives 0.1 to the cells
    entered and 0.6 to the rest; afterwards 0.95 to the goal. The posterior std (every dimension) is 1, 1, 0.8 before
    the goal and 0.2 from it on; its mean moves 1 a step."""
    if reach_goal:
        positions = np.array([(0, 0), (1, 0), (2, 0), (2, 1), (1, 0), (2, 0), (2, 1)])
        rewards = np.array([-0.1, -0.1, 1.0, -0.1, -0.1, 1.0])
    else:
        positions = np.array([(0, 0), (1, 0), (2, 0), (2, 0), (1, 0), (2, 0), (2, 0)])
        rewards = np.full(6, -0.1)
    probs = np.full((7, 3, 3), 0.6)
    entered = np.zeros((3, 3), dtype=bool)
    for t in range(3 if reach_goal else 4):
        entered[tuple(positions[t])] = True
        probs[t][entered] = 0.1
    if reach_goal:
        probs[3:, 2, 1] = 0.95
    std = np.array([1.0, 1.0, 0.8, 0.2, 0.2, 0.2, 0.2])
    return {"positions": positions, "rewards": rewards, "reward_prob": probs, "goal": np.array([2, 1]),
            "horizon": np.array(3), "latent_mean": np.stack([np.arange(7.0), np.zeros(7)], axis=1),
            "latent_logvar": np.repeat(np.log(std ** 2)[:, None], 2, axis=1), "frames": np.array(100)}


def test_statistics_of_a_rollout_that_finds_the_goal():
    cells = trace_statistics(_trace(), "cells")
    assert cells == pytest.approx({"seen": 0.1, "unseen": 0.6, "goal_after": 0.95})
    latent = trace_statistics(_trace(), "latent")
    assert latent["std_prior"] == pytest.approx(1.0) and latent["std_before"] == pytest.approx(0.8)
    # from the goal (step 3) to the end of its episode (step 3): the variance collapses to a quarter
    assert latent["std_after"] == pytest.approx(0.2) and latent["std_change"] == pytest.approx(0.25)
    assert latent["mean_travel"] == pytest.approx(6.0) and latent["std_mean"] == pytest.approx(3.6 / 7)


def test_a_rollout_that_never_enters_the_goal_has_no_statistic_about_it():
    cells = trace_statistics(_trace(reach_goal=False), "cells")
    # "before the goal" is then the whole of episode 1
    assert cells == pytest.approx({"seen": 0.1, "unseen": 0.6, "goal_after": math.nan}, nan_ok=True)
    latent = trace_statistics(_trace(reach_goal=False), "latent")
    assert math.isnan(latent["std_change"]) and latent["std_prior"] == pytest.approx(1.0)


def test_conditions_compare_a_statistic_with_a_number_or_another_labels():
    stats = {"a": {"seen": 0.1, "unseen": 0.6}, "b": {"seen": 0.3, "unseen": math.nan}}
    assert evaluate(parse_condition("seen <= 0.1", "cells"), stats, "a") is True
    assert evaluate(parse_condition("seen > a:seen", "cells"), stats, "b") is True
    assert evaluate(parse_condition("b:seen < seen", "cells"), stats, "a") is False
    assert evaluate(parse_condition("unseen >= 0.5", "cells"), stats, "b") is None  # not measurable
    assert parse_condition("std_change <= 5e-1", "latent").number == 0.5
    with pytest.raises(ValueError, match="no statistic 'std_change' for a cells belief; allowed: seen, unseen"):
        parse_condition("std_change <= 0.5", "cells")
    with pytest.raises(ValueError, match="is not '\\[label:\\]statistic"):
        parse_condition("seen == 0.1", "cells")


def test_a_belief_claim_holds_only_where_every_condition_does():
    entry = {"name": "fig", "labels": ["a", "b"], "seed": 0, "kind": "cells", "goal": [2, 1]}
    stats = {"a": trace_statistics(_trace(), "cells"), "b": trace_statistics(_trace(reach_goal=False), "cells")}
    claim = {"text": "t", "label": "a", "belief": "fig", "holds_if": ["seen <= 0.15", "unseen >= 0.5"]}
    measured, verdict = check_belief_claim(claim, entry, stats)
    assert verdict == "holds" and "seed 0, one rollout to the goal (2, 1)" in measured and "unseen = 0.6" in measured
    claim["holds_if"] = ["seen <= 0.15", "unseen >= 0.7"]
    assert check_belief_claim(claim, entry, stats)[1] == "does not hold"
    claim["holds_if"] = ["b:goal_after >= 0.9"]
    assert check_belief_claim(claim, entry, stats)[1] == "not measurable"
    assert check_belief_claim(claim, entry, {"a": stats["a"]}) == ("no belief trace published for b", "no data")


def test_a_belief_claim_must_name_a_picture_and_conditions_about_its_labels(tmp_path):
    path = tmp_path / "m.yaml"
    runs = [{"label": "a", "algo": "varibad", "env": "gridworld", "seeds": [0]},
            {"label": "b", "algo": "varibad", "env": "gridworld", "seeds": [0]}]
    beliefs = [{"name": "fig", "labels": ["a"], "seed": 0, "kind": "latent"}]

    def refused(claim: dict, match: str) -> None:
        path.write_text(yaml.safe_dump({"runs": runs, "beliefs": beliefs, "claims": [claim]}))
        with pytest.raises(ManifestError, match=match):
            load_manifest(path)

    refused({"text": "t", "label": "a", "belief": "fig"}, r"claims\[0\]: belief and holds_if go together")
    refused({"text": "t", "label": "a", "belief": "other", "holds_if": ["std_mean < 1"]},
            r"belief 'other' is not a beliefs entry's name \(fig\)")
    refused({"text": "t", "label": "a", "belief": "fig", "holds_if": ["seen < 1"]},
            r"no statistic 'seen' for a latent belief")
    refused({"text": "t", "label": "a", "belief": "fig", "holds_if": ["std_mean < b:std_mean"]},
            r"condition 'std_mean < b:std_mean' is about b, not a label of the picture 'fig'")
    refused({"text": "t", "label": "a", "belief": "fig", "holds_if": []}, r"holds_if must be a non-empty list")
    path.write_text(yaml.safe_dump({"runs": runs, "beliefs": beliefs, "claims": [
        {"text": "t", "label": "a", "belief": "fig", "holds_if": ["std_change <= 0.5"]}]}))
    assert load_manifest(path).data["claims"][0]["holds_if"] == ["std_change <= 0.5"]
