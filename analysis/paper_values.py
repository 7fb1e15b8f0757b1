"""Published numbers that our tables print beside ours (typed from the papers, cited in docs/design.md; nothing
here is computed, and nothing here is ours).

``ML1_TABLE_1``: VariBAD (Zintgraf et al., JMLR 2021), table 1, meta-test success rate (%) on Meta-World ML1's test
tasks. variBAD was trained for 2 episodes per task (20 seeds per setting) and is reported in episodes 1 and 2; on
pick-place 6 of the 20 seeds learned anything (the 29% is theirs). The MAML, PEARL and RL2 rows (marked ``*``) are
Yu et al. (2019)'s, as the VariBAD paper quotes them, after 10 adaptation episodes.
"""

from __future__ import annotations

#: task -> method -> {episode: success %}
ML1_TABLE_1: dict[str, dict[str, dict[int, float]]] = {
    "reach": {"variBAD": {1: 100.0, 2: 100.0}, "MAML*": {10: 48.0}, "PEARL*": {10: 38.0}, "RL2*": {10: 45.0}},
    "push": {"variBAD": {1: 100.0, 2: 100.0}, "MAML*": {10: 74.0}, "PEARL*": {10: 71.0}, "RL2*": {10: 87.0}},
    "pick_place": {"variBAD": {1: 29.0, 2: 29.0}, "MAML*": {10: 12.0}, "PEARL*": {10: 28.0}, "RL2*": {10: 24.0}},
}
#: task -> method -> what the paper says about its seeds
ML1_TABLE_1_SEEDS: dict[str, dict[str, str]] = {
    "reach": {"variBAD": "20 seeds"},
    "push": {"variBAD": "20 seeds"},
    "pick_place": {"variBAD": "6/20 seeds learned"},
}
ML1_TABLE_1_SOURCE = "VariBAD JMLR 2021, table 1 (* = Yu et al. 2019, after 10 episodes)"
