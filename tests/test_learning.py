"""Bounded learning test: VariBAD with the paper's GridWorld configuration learns to search and exploit."""

import pandas as pd
import pytest

import train


@pytest.mark.slow
def test_varibad_learns_gridworld(tmp_path):
    """2M frames (about 3-4 minutes here) of the paper config, seed 0, meta-tested on all 21 goals.

    The uniform random policy scores about -1.2 per episode and the do-nothing policy -1.5; a Bayes-optimal
    searcher about 4 in episode 1 and about 11 afterwards. After 2M frames VariBAD must clearly exploit what it
    found in episode 1: episodes 2-4 average at least 7 (seed 0 here reaches 4.0 / 9.0 / 11.1 / 11.0).
    """
    cfg = train.compose_config(f"results_dir={tmp_path}", "seed=0", "train.num_frames=2000000",
                               "train.eval_interval_frames=1000000", "progress=false")
    final = train.run(cfg)
    per_episode = final.groupby("episode")["return"].mean()
    assert per_episode[1] >= 1.0, per_episode
    assert per_episode[[2, 3, 4]].mean() >= 7.0, per_episode
    assert (per_episode[[2, 3, 4]] > per_episode[1]).all(), per_episode  # it adapts: later episodes are better
    ev = pd.read_csv(next((tmp_path / "gridworld" / "varibad").iterdir()) / "eval.csv")
    assert sorted(ev["frames"].unique())[-1] == 2000640
