"""Exact GridWorld reference policies: known-goal optimal, Bayes-optimal and posterior sampling.

These are the reference lines of the VariBAD paper (Zintgraf et al.), fig. 1e and App. B.2 / fig. 12: the
"hard-coded" optimal policy with privileged goal information, the Bayes-optimal policy and the posterior sampling
policy. The paper hard-codes them; here every number is *computed* from the environment definition (design.md §2,
``envs/gridworld.py``), never typed in, so the reference lines cannot drift from the environment.

Environment facts used (all read from ``envs.gridworld`` / the env registry): start (0, 0) every episode;
actions noop, up (y+1), right (x+1), down (y-1), left (x-1), clipped at the walls; reward +1 if the *new* cell
is the goal, else -0.1; no termination at the goal; H steps per episode; the goal is kept for K episodes and is
uniform over the candidate cells (all cells except the excluded 2x2 corner).

Belief: with a uniform prior and deterministic observations (the reward says whether the new cell is the goal),
the posterior before the goal is found is uniform over the candidate cells not yet visited, and a point mass
once it is found. Consequently, before the goal is found the only observation sequence an agent can see is
"not the goal" at every step, so a Bayes-optimal policy is an *open-loop search sequence* followed by the
known-goal optimal behaviour (stay on the goal, in later episodes go straight there). The Bayes-optimal planner
relies on this; the tests check it against a brute-force expectimax over the full observation tree.

Exactness: all three are computed in exact rational arithmetic (integers over a common denominator, returned
as ``fractions.Fraction``); no sampling, no approximation. Posterior sampling is an enumeration over goals and
over the sampled candidates with their probabilities; its Monte Carlo estimate is only a cross-check.

CLI: ``python -m algorithms.references.gridworld [--out PATH]`` writes the per-episode references for K = 4
(meta-training) and K = 6 (meta-test) to a small JSON file.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from envs import get_spec
from envs.gridworld import ACTION_DELTAS, EXCLUDED_GOALS, GOAL_REWARD, GRID_SIZE, STEP_REWARD, candidate_goals
from records.command_line import command_line
from records.references import reference_file

Cell = tuple[int, int]

NOOP = 0
#: tie-break of the Bayes-optimal policy: among optimal actions the lowest index wins (0 noop, 1 up, 2 right,
#: 3 down, 4 left); a "stay" (noop or a move into a wall) is only a candidate while it visits a new cell
BAYES_TIE_BREAK = (
    "among value-maximising actions the lowest action index (0 noop, 1 up, 2 right, 3 down, 4 left); "
    "staying in place (noop or a wall bump) is only considered when it visits an unvisited candidate, "
    "i.e. at the start cell if the start is a candidate (never on the 5x5 GridWorld); once no unvisited "
    "candidate can be reached in the rest of an episode the policy noops (those actions cannot change any return)"
)
PS_TIE_BREAK = (
    "shortest path along x first (right/left until the column matches), then along y (up/down); "
    "known goal: the same path to the goal, then noop on it"
)
DEFAULT_JSON = reference_file("gridworld")
MC_SEED = 0
MC_ROLLOUTS = 20_000


def _exact(value: float) -> Fraction:
    """The decimal a float reward was written as (``-0.1`` -> ``-1/10``, not its binary approximation)."""
    return Fraction(repr(float(value)))


EXACT_GOAL_REWARD = _exact(GOAL_REWARD)
EXACT_STEP_REWARD = _exact(STEP_REWARD)


@dataclass(frozen=True)
class GridSpec:
    """A GridWorld instance: grid size, start, goal cells excluded from the prior, horizon H and rewards.

    The defaults are the benchmark's 5x5 GridWorld (values taken from ``envs.gridworld`` and the env registry).
    The planners are generic so that they can be checked against brute force on small instances.
    """

    width: int = GRID_SIZE
    height: int = GRID_SIZE
    excluded: frozenset[Cell] = frozenset(EXCLUDED_GOALS)
    horizon: int = field(default_factory=lambda: get_spec("gridworld").horizon)
    start: Cell = (0, 0)
    goal_reward: Fraction = EXACT_GOAL_REWARD
    step_reward: Fraction = EXACT_STEP_REWARD

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1 or self.horizon < 1:
            raise ValueError(f"invalid grid {self.width}x{self.height} with horizon {self.horizon}")
        if not self.goal_reward > self.step_reward:
            raise ValueError("the goal reward must exceed the step reward (the planners rely on it)")
        if not self.in_grid(self.start):
            raise ValueError(f"start {self.start} is outside the grid")
        if not self.candidates:
            raise ValueError("no candidate goal cells")

    def in_grid(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.width and 0 <= cell[1] < self.height

    @cached_property
    def candidates(self) -> tuple[Cell, ...]:
        """Goal cells of the uniform prior, sorted by (x, y) like ``envs.gridworld.candidate_goals``."""
        return tuple((x, y) for x in range(self.width) for y in range(self.height) if (x, y) not in self.excluded)

    def move(self, cell: Cell, action: int) -> Cell:
        """The env's dynamics: apply ``ACTION_DELTAS[action]`` and clip at the walls."""
        dx, dy = (int(v) for v in ACTION_DELTAS[action])
        return (min(max(cell[0] + dx, 0), self.width - 1), min(max(cell[1] + dy, 0), self.height - 1))

    def reward(self, new_cell: Cell, goal: Cell) -> Fraction:
        return self.goal_reward if new_cell == goal else self.step_reward

    @staticmethod
    def distance(a: Cell, b: Cell) -> int:
        """Shortest-path length on an obstacle-free grid (Manhattan distance)."""
        return abs(a[0] - b[0]) + abs(a[1] - b[1])


def known_goal_reaches(spec: GridSpec, goal: Cell) -> bool:
    """Whether the known-goal policy enters ``goal`` within an episode: ``max(d, 1) <= H`` (a goal on the start cell
    needs one noop)."""
    return max(spec.distance(spec.start, goal), 1) <= spec.horizon


def known_goal_episode_return(spec: GridSpec, goal: Cell) -> Fraction:
    """Return of one episode of the known-goal optimal policy: shortest path to the goal, then stay on it.

    The first +1 comes at step ``m = max(d, 1)`` (d = distance from the start; a goal on the start cell needs one
    noop because the reward is paid for the cell entered), then +1 every step; -0.1 before.
    """
    if not known_goal_reaches(spec, goal):
        return spec.horizon * spec.step_reward
    m = max(spec.distance(spec.start, goal), 1)
    return (m - 1) * spec.step_reward + (spec.horizon - m + 1) * spec.goal_reward


def optimal_per_episode(spec: GridSpec, num_episodes: int) -> list[Fraction]:
    """Expected return of each episode for the policy that knows the goal (the same in every episode).

    The "optimal (privileged goal information)" line of VariBAD (Zintgraf et al.) fig. 1e / fig. 12.
    """
    mean = sum((known_goal_episode_return(spec, g) for g in spec.candidates), Fraction(0)) / len(spec.candidates)
    return [mean] * num_episodes


def optimal_success_per_episode(spec: GridSpec, num_episodes: int) -> list[Fraction]:
    """Success rate (the goal entered at least once in the episode) of the policy that knows the goal: the share of
    goals it can reach within H steps, the same in every episode."""
    reachable = sum(known_goal_reaches(spec, g) for g in spec.candidates)
    return [Fraction(reachable, len(spec.candidates))] * num_episodes


def shortest_path_x_first(spec: GridSpec, source: Cell, target: Cell) -> list[int]:
    """Actions of the shortest path that moves along x first, then along y (posterior sampling's tie-break)."""
    dx, dy = target[0] - source[0], target[1] - source[1]
    return [2 if dx > 0 else 4] * abs(dx) + [1 if dy > 0 else 3] * abs(dy)


# ---------------------------------------------------------------------------------------------------- evaluation
def _first_entry(spec: GridSpec, num_episodes: int, actions: Sequence[int], goal: Cell) -> tuple[int, int] | None:
    """(episode, step) at which following the open-loop ``actions`` (the position reset to the start every H steps)
    first enters ``goal``; ``None`` if it never does."""
    H = spec.horizon
    if len(actions) != num_episodes * H:
        raise ValueError(f"expected {num_episodes * H} actions, got {len(actions)}")
    for k in range(num_episodes):
        pos = spec.start
        for step in range(H):
            pos = spec.move(pos, actions[k * H + step])
            if pos == goal:
                return k, step
    return None


def evaluate_search_plan(spec: GridSpec, num_episodes: int, actions: Sequence[int]) -> list[Fraction]:
    """Exact per-episode expected returns of "follow ``actions`` until the goal is found, then act optimally".

    ``actions`` is an open-loop sequence of ``num_episodes * H`` actions (the position resets to the start every
    H steps). Once the goal is entered the agent stays on it (+1 per step) and goes straight to it in every later
    episode. This is how every Bayes-optimal policy behaves (see the module docstring), so it also evaluates the
    planner's output independently of the planner's internal bookkeeping.
    """
    H = spec.horizon
    totals = [Fraction(0)] * num_episodes
    for goal in spec.candidates:
        found = _first_entry(spec, num_episodes, actions, goal)
        k_found, step = found if found is not None else (num_episodes, 0)
        for k in range(num_episodes):
            if k < k_found:
                totals[k] += H * spec.step_reward
            elif k == k_found:  # found: stay on the goal for the rest of the episode
                totals[k] += step * spec.step_reward + (H - step) * spec.goal_reward
            else:
                totals[k] += known_goal_episode_return(spec, goal)
    return [v / len(spec.candidates) for v in totals]


def search_plan_success(spec: GridSpec, num_episodes: int, actions: Sequence[int]) -> list[Fraction]:
    """Success rate per episode (the goal entered at least once in it) of the policy :func:`evaluate_search_plan`
    evaluates: follow ``actions`` until the goal is found, then go straight to it in every later episode."""
    hits = [0] * num_episodes
    for goal in spec.candidates:
        found = _first_entry(spec, num_episodes, actions, goal)
        if found is not None:
            hits[found[0]] += 1
            for later in range(found[0] + 1, num_episodes):
                hits[later] += known_goal_reaches(spec, goal)
    return [Fraction(h, len(spec.candidates)) for h in hits]


# ---------------------------------------------------------------------------------------------- Bayes-optimal
@dataclass(frozen=True)
class BayesOptimalPlan:
    """Result of :func:`plan_bayes_optimal`."""

    #: optimal expected total (undiscounted) return over the K episodes, exact
    value: Fraction
    #: the open-loop search sequence (K * H actions) the Bayes-optimal policy follows until it finds the goal
    actions: tuple[int, ...]
    #: exact expected return of each episode under that policy (tie-break: ``BAYES_TIE_BREAK``)
    per_episode: tuple[Fraction, ...]
    #: lower bound used for pruning (value of the beam-search plan), scaled integer units
    lower_bound: int
    #: number of search states kept by the exact pass (for diagnostics and speed regressions)
    num_states: int


class _SearchProblem:
    """The Bayes-optimal search as a deterministic shortest-path-like problem over (position, unvisited set).

    Gains. Measure the return of goal g against "never found" (K*H step rewards). Entering candidate c for the
    first time when tau steps of the current episode are left (this one included) and e episodes follow adds,
    if c is the goal, ``gain(c) = (r_goal - r_step) * tau + e * w(c)`` with ``w(c) = opt(c) - H * r_step`` (opt:
    known-goal episode return). The expected total is ``K*H*r_step + sum_c gain(c at its first visit) / N``:
    maximising it over open-loop sequences is a deterministic problem whose state at global step n is
    ``(position, set U of unvisited candidates)``. All quantities are integers in units of 1/scale.

    Exact reductions (none can change the optimal value, nor the lowest-index optimal action on an optimal path):

    * Staying (noop or a wall bump) on an already visited cell is never expanded. If a later step of the same
      episode enters a new cell, moving the stay to the end of the episode makes those first visits earlier,
      which strictly increases the gain (gains strictly decrease with time because r_goal > r_step, and the
      step moved to the end gains >= 0): the stay is strictly suboptimal. If no later step of the episode
      enters a new cell, but one could, entering it strictly increases the gain (its gain now exceeds any
      later one by >= (r_goal - r_step) * tau, and it removes nothing from later episodes): again strictly
      suboptimal. Otherwise nothing can be found in the rest of the episode (IDLE below) and no action changes
      any return. Hence neither the optimal value nor a return-relevant tie-break changes.
    * Candidates that can no longer be found (not reachable in the rest of this episode, and no later episode
      or not reachable within H from the start) contribute zero whatever happens: they are dropped from U.
    * When nothing in U is reachable in the rest of the episode the position no longer matters: the state
      becomes IDLE until the reset (actions there cannot change any return; the policy noops).
    * Branch and bound: ``UB(state)`` (below) is an upper bound on the gain still collectable; ``LB`` is the
      gain of an actual plan (beam search). A state whose best accumulated gain F satisfies F + UB < LB lies on
      no optimal path. Every state of every optimal path survives (its F is at least the path's prefix gain), so
      backward values on the surviving graph are exact along optimal paths and the lowest-index optimal action
      is recovered (a surviving edge with gain + G(child) == G(state) is truly optimal because G <= G*).
    """

    def __init__(self, spec: GridSpec, num_episodes: int) -> None:
        self.spec, self.K, self.H = spec, num_episodes, spec.horizon
        rewards = (spec.goal_reward, spec.step_reward)
        self.scale = math.lcm(*(r.denominator for r in rewards))
        self.r_step = int(spec.step_reward * self.scale)
        self.delta = int((spec.goal_reward - spec.step_reward) * self.scale)
        cells = [(x, y) for x in range(spec.width) for y in range(spec.height)]
        self.cells = cells
        self.num_cells = P = len(cells)
        self.idle = P
        self.pos_bits = max(1, P.bit_length())
        cand = list(spec.candidates)
        self.cand = cand
        self.num_cand = C = len(cand)
        if C + self.pos_bits > 62:
            raise ValueError("grid too large for 64-bit state keys")
        index = {c: i for i, c in enumerate(cells)}
        self.start = index[spec.start]
        # successor cell of every (cell, action); the IDLE pseudo-cell only noops
        self.next_cell = np.full((P + 1, len(ACTION_DELTAS)), -1, dtype=np.int64)
        for p, c in enumerate(cells):
            for a in range(len(ACTION_DELTAS)):
                self.next_cell[p, a] = index[spec.move(c, a)]
        self.next_cell[P, NOOP] = P
        self.cand_bit = np.zeros(P + 1, dtype=np.int64)
        for i, c in enumerate(cand):
            self.cand_bit[index[c]] = 1 << i
        # distance to every candidate, at least 1 (a candidate on the current cell needs a noop); IDLE: infinite
        big = 10 * (spec.width + spec.height + self.H)
        self.dist = np.full((P + 1, C), big, dtype=np.int64)
        for p, c in enumerate(cells):
            for i, g in enumerate(cand):
                self.dist[p, i] = max(spec.distance(c, g), 1)
        self.opt = np.array([int(known_goal_episode_return(spec, g) * self.scale) for g in cand], dtype=np.int64)
        self.w = self.opt - self.H * self.r_step  # >= 0: the known-goal return is at least H step rewards
        self.w_cell = np.zeros(P + 1, dtype=np.int64)  # w of the candidate on each cell (0 elsewhere)
        for i, c in enumerate(cand):
            self.w_cell[index[c]] = self.w[i]
        self.cap0 = np.maximum(self.H - self.dist[self.start] + 1, 0)  # latest time-left of a visit, any episode
        # parity of the distance to each candidate (grid graphs are bipartite); a stay breaks it, and stays are
        # only ever expanded on an unvisited start cell: parity bounds are used unless the start is a candidate
        self.parity = np.zeros((P + 1, C), dtype=np.int64)
        for p, c in enumerate(cells):
            for i, g in enumerate(cand):
                self.parity[p, i] = spec.distance(c, g) % 2
        self.parity_ok = spec.start not in cand
        self.bit_values = np.array([1 << i for i in range(C)], dtype=np.int64)
        self.ever_findable = int(sum(self.bit_values[self.cap0 > 0]))

    # -- layer bookkeeping -------------------------------------------------------------------------------------
    def layer_time(self, n: int) -> tuple[int, int]:
        """(steps left in the episode including the next one, episodes after the current one) at global step n."""
        return self.H - n % self.H, self.K - 1 - n // self.H

    def root(self) -> int:
        return (self.ever_findable << self.pos_bits) | self.start

    def bits(self, U: np.ndarray) -> np.ndarray:
        return ((U[:, None] >> np.arange(self.num_cand)) & 1).astype(bool)

    def normalise(self, pos: np.ndarray, U: np.ndarray, n: int) -> np.ndarray:
        """Keys of states at global step n: drop candidates that can no longer be found, collapse to IDLE."""
        if n == self.K * self.H:
            return np.zeros(len(pos), dtype=np.int64)
        t, e = self.layer_time(n)
        if n % self.H == 0:
            pos = np.full_like(pos, self.start)  # episode reset
        b = self.bits(U)
        reach_now = b & (self.dist[pos] <= t)
        keep = reach_now if e == 0 else b  # in later episodes everything in U (all ever-findable) may be found
        U = (keep * self.bit_values).sum(axis=1)
        pos = np.where(reach_now.any(axis=1), pos, self.idle)
        return (U << self.pos_bits) | pos

    def upper_bound(self, keys: np.ndarray, n: int) -> np.ndarray:
        """Upper bound on the gain still collectable from the states ``keys`` at global step n.

        Relaxation: forget that the new cells must lie on one path; keep only that (i) at most one new cell is
        entered per step, (ii) a cell at distance d is entered at the earliest d steps from now, and (iii) on the
        bipartite grid it is entered at a time of the parity of d (valid because no stay is ever expanded except
        on an unvisited start cell, see ``parity_ok``). So the time-left values tau of the cells found in this
        episode are distinct within each parity class, differ by >= 2 there, and are <= t - d + 1: their sum is
        at most the greedy schedule below, and at most as many cells as that schedule holds (per class) get
        e * w, all others at most (e - 1) * w. Later episodes start at the start cell: the same schedule per
        episode, and every cell is found at most once, hence min(e * schedule, sum of caps): bound (a).
        Bound (b) charges every cell its best later value (e - 1) * w + delta * cap0 and adds, for the cells
        that fit into this episode's schedule, the largest possible surplus of finding them now. Both are valid
        (w >= 0, caps >= 0); the minimum is used.
        """
        if n == self.K * self.H:
            return np.zeros(len(keys), dtype=np.int64)
        t, e = self.layer_time(n)
        pos, U = keys & ((1 << self.pos_bits) - 1), keys >> self.pos_bits
        b = self.bits(U)
        cap_now = np.where(b, np.maximum(t - self.dist[pos] + 1, 0), 0)
        tau, counts = self._schedule(cap_now, self.parity[pos])
        if e == 0:
            return self.delta * tau
        reachable = cap_now > 0
        cap_later = np.where(b, self.cap0, 0)
        tau_later, _ = self._schedule(cap_later, np.broadcast_to(self.parity[self.start], cap_later.shape))
        # (a) time and w terms bounded separately
        top_w = self._top_per_class(np.where(reachable, self.w, 0), self.parity[pos], counts)
        bound_a = (
            (e - 1) * (b * self.w).sum(axis=1)
            + top_w
            + self.delta * (tau + np.minimum(e * tau_later, cap_later.sum(axis=1)))
        )
        # (b) every cell at its best later value, plus the best possible extra of finding it in this episode
        extra = np.where(reachable, self.w + self.delta * (cap_now - cap_later), 0)
        bound_b = (
            (e - 1) * (b * self.w).sum(axis=1)
            + self.delta * cap_later.sum(axis=1)
            + self._top_per_class(np.maximum(extra, 0), self.parity[pos], counts)
        )
        return np.minimum(bound_a, bound_b)

    def _top_per_class(self, values: np.ndarray, parity: np.ndarray, counts: list[np.ndarray]) -> np.ndarray:
        """Rowwise sum of the ``counts[p]`` largest non-negative ``values`` within each parity class p."""
        total = np.zeros(len(values), dtype=np.int64)
        for p, count in enumerate(counts):
            masked = values if not self.parity_ok else np.where(parity == p, values, 0)
            ordered = -np.sort(-masked, axis=1)
            csum = np.concatenate([np.zeros((len(values), 1), dtype=np.int64), np.cumsum(ordered, axis=1)], axis=1)
            total += np.take_along_axis(csum, count[:, None], axis=1)[:, 0]
        return total

    def _schedule(self, caps: np.ndarray, parity: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Greedy bound on sum(tau) for cells with time-left caps: per parity class, values distinct by >= gap.

        Returns the bound per row and, per class, the number of cells the greedy schedules. Greedy on caps sorted
        descending: v_i = min(cap_i, v_(i-1) - gap), i.e. v_i = min_(j<=i)(cap_j + gap * j) - gap * i. As in
        scheduling unit jobs before deadlines (placing each as late as possible, latest deadline first), this
        maximises both the sum of the values and the number of cells that fit (exchange argument).
        """
        classes = (0, 1) if self.parity_ok else (None,)
        gap = 2 if self.parity_ok else 1
        total = np.zeros(len(caps), dtype=np.int64)
        counts = []
        for p in classes:
            a = caps if p is None else np.where(parity == p, caps, 0)
            a = -np.sort(-a, axis=1)
            idx = gap * np.arange(a.shape[1])
            v = np.maximum(np.minimum.accumulate(a + idx, axis=1) - idx, 0)
            total += v.sum(axis=1)
            counts.append((v > 0).sum(axis=1))
        if not self.parity_ok:
            counts.append(np.zeros(len(caps), dtype=np.int64))
        return total, counts

    def expand(self, keys: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Children keys and gains, shape (len(keys), actions); -1 marks actions that are not expanded."""
        t, e = self.layer_time(n)
        pos, U = keys & ((1 << self.pos_bits) - 1), keys >> self.pos_bits
        nxt = self.next_cell[pos]  # (m, A)
        bit = self.cand_bit[np.maximum(nxt, 0)]
        new = (U[:, None] & bit) != 0
        stay = nxt == pos[:, None]
        allowed = (nxt >= 0) & (~stay | new | (pos == self.idle)[:, None])
        gain = np.where(new, self.delta * t + e * self.w_cell[np.maximum(nxt, 0)], 0)
        children = self.normalise(nxt.ravel(), (U[:, None] & ~bit).ravel(), n + 1).reshape(nxt.shape)
        return np.where(allowed, children, -1), gain

    # -- search ------------------------------------------------------------------------------------------------
    def forward(
        self, lower_bound: int | None, beam: int | None
    ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Layered forward pass: best accumulated gain F per state, pruned by bound (exact) or beam (heuristic).

        Returns the kept state keys per layer, per layer the (child index or -1, gain) arrays of every
        (state, action), and F of the last layer.
        """
        keys = np.array([self.root()], dtype=np.int64)
        F = np.zeros(1, dtype=np.int64)
        layers, edges = [keys], []
        for n in range(self.K * self.H):
            children, gain = self.expand(keys, n)
            ok = children >= 0
            cand_keys, inv = np.unique(children[ok], return_inverse=True)
            best = np.full(len(cand_keys), np.iinfo(np.int64).min, dtype=np.int64)
            np.maximum.at(best, inv, (F[:, None] + gain)[ok])
            score = best + self.upper_bound(cand_keys, n + 1)
            if lower_bound is not None:
                keep = score >= lower_bound
            else:
                keep = np.zeros(len(cand_keys), dtype=bool)
                keep[np.argsort(-score, kind="stable")[:beam]] = True
            new_keys, F = cand_keys[keep], best[keep]
            if len(new_keys) == 0:  # impossible with a valid bound: the lower-bound plan's states always survive
                raise AssertionError(f"internal error: every state pruned at step {n + 1}")
            # child index into the kept layer, -1 where pruned or not expanded
            child_idx = np.full(children.shape, -1, dtype=np.int64)
            kept_pos = np.cumsum(keep) - 1
            child_idx[ok] = np.where(keep[inv], kept_pos[inv], -1)
            edges.append((child_idx, gain))
            layers.append(new_keys)
            keys = new_keys
        return layers, edges, F

    def solve(self, beam: int) -> tuple[int, tuple[int, ...], int, int]:
        """Optimal total gain, the lowest-index optimal open-loop action sequence, LB used, states kept."""
        _, _, final_gains = self.forward(None, beam)
        lower_bound = int(final_gains.max())
        layers, edges, _ = self.forward(lower_bound, None)
        neg = np.iinfo(np.int64).min // 4
        G = np.zeros(len(layers[-1]), dtype=np.int64)
        values = [G]
        for child_idx, gain in reversed(edges):
            q = np.where(child_idx >= 0, gain + G[np.maximum(child_idx, 0)], neg)
            G = q.max(axis=1)
            values.append(G)
        values.reverse()
        best = int(values[0][0])
        if best < lower_bound:
            raise AssertionError("internal error: the exact pass lost the beam-search plan")
        actions, state = [], 0
        for n, (child_idx, gain) in enumerate(edges):
            row_ok = child_idx[state] >= 0
            q = np.where(row_ok, gain[state] + values[n + 1][np.maximum(child_idx[state], 0)], neg)
            a = int(np.flatnonzero(q == values[n][state])[0])
            actions.append(a)
            state = int(child_idx[state, a])
        return best, tuple(actions), lower_bound, sum(len(k) for k in layers)


def plan_bayes_optimal(spec: GridSpec, num_episodes: int, beam: int = 1000) -> BayesOptimalPlan:
    """Exact Bayes-optimal policy of the GridWorld BAMDP with horizon K x H (undiscounted total return).

    The "Bayes-optimal" reference of the VariBAD paper (Zintgraf et al., fig. 1b/1e, App. B.2 / fig. 12), which
    the paper hard-codes; here it is planned over beliefs, so it follows the environment definition.

    Returns the optimal expected total return (exact ``Fraction``), the open-loop search sequence of the
    Bayes-optimal policy with tie-break ``BAYES_TIE_BREAK`` and that policy's exact per-episode expected returns.
    When several policies are optimal in total return the per-episode split may depend on the tie-break.
    See :class:`_SearchProblem` for why the search is exact. ``beam`` only affects speed, never the result.
    """
    if num_episodes < 1:
        raise ValueError("num_episodes must be >= 1")
    problem = _SearchProblem(spec, num_episodes)
    gain, actions, lower_bound, num_states = problem.solve(beam)
    n = len(spec.candidates)
    value = num_episodes * spec.horizon * spec.step_reward + Fraction(gain, problem.scale * n)
    per_episode = evaluate_search_plan(spec, num_episodes, actions)
    if sum(per_episode) != value:  # the independent evaluation must reproduce the planner's value
        raise AssertionError(f"plan evaluates to {sum(per_episode)}, planner value {value}")
    return BayesOptimalPlan(value, actions, tuple(per_episode), lower_bound, num_states)


# ------------------------------------------------------------------------------------------ posterior sampling
def _ps_walk(spec: GridSpec, target: Cell) -> list[Cell]:
    """Cells entered in one episode by posterior sampling heading for ``target`` (then noops on it)."""
    cells, pos = [], spec.start
    for a in shortest_path_x_first(spec, spec.start, target)[: spec.horizon]:
        pos = spec.move(pos, a)
        cells.append(pos)
    return cells + [pos] * (spec.horizon - len(cells))


def posterior_sampling_per_episode(spec: GridSpec, num_episodes: int, value: str = "return") -> list[Fraction]:
    """Exact per-episode expected returns (``value="success"``: success rates, the goal entered at least once in the
    episode) of posterior sampling with the true belief (VariBAD fig. 1c, 1e, 12).

    At the start of each episode while the goal is unknown, sample a candidate uniformly from the belief (the
    unvisited candidates), walk to it by the x-first shortest path (``PS_TIE_BREAK``), removing every entered
    cell from the belief; entering the goal: stay there for the episode and go straight to it later; reaching
    the sample when it is not the goal: noop there until the episode ends. Enumerates every goal and every
    sequence of samples with its probability, memoised on (episode, belief). Exact: integer numerators over the
    common denominator ``scale * L**(episodes left)`` with ``L = lcm(1..#candidates)`` (every belief size
    divides L), returned as ``Fraction``.
    """
    if value not in ("return", "success"):
        raise ValueError(f"value must be 'return' or 'success', got {value!r}")
    success = value == "success"
    cand = list(spec.candidates)
    C, H, K = len(cand), spec.horizon, num_episodes
    col = {c: i for i, c in enumerate(cand)}
    scale = 1 if success else math.lcm(spec.goal_reward.denominator, spec.step_reward.denominator)
    r_goal, r_step = int(spec.goal_reward * scale), int(spec.step_reward * scale)
    opt = np.array([int(known_goal_reaches(spec, g)) if success
                    else int(known_goal_episode_return(spec, g) * scale) for g in cand], dtype=object)
    L = math.lcm(*range(1, C + 1))
    # for every sample s: per-goal episode return (scaled), whether found, and the candidates entered (bitmask)
    ret = np.full((C, C), 0 if success else H * r_step, dtype=object)
    found = np.zeros((C, C), dtype=bool)
    entered = [0] * C
    for s, target in enumerate(cand):
        for step, cell in enumerate(_ps_walk(spec, target)):
            if cell in col:
                g = col[cell]
                entered[s] |= 1 << g
                if not found[s, g]:
                    found[s, g] = True
                    ret[s, g] = 1 if success else step * r_step + (H - step) * r_goal
    memo: dict[tuple[int, int], np.ndarray] = {}

    def numerators(k: int, U: int) -> np.ndarray:
        """Episodes k..K-1 given belief U at the start of episode k: numerators over ``scale * L**(K - k)``.

        Rows are goals (only goals in U are meaningful), columns episodes k..K-1.
        """
        if (k, U) in memo:
            return memo[(k, U)]
        samples = [s for s in range(C) if U >> s & 1]
        child_scale = L ** (K - k - 1)  # converts scaled returns to the child's denominator scale * L**(K-k-1)
        out = np.zeros((C, K - k), dtype=object)
        for s in samples:
            out[:, 0] += ret[s] * child_scale
            if k + 1 < K:
                later = np.tile((opt * child_scale)[:, None], (1, K - k - 1))  # goal known from now on
                rest = U & ~entered[s]
                if rest:
                    later = np.where(found[s][:, None], later, numerators(k + 1, rest))
                out[:, 1:] += later
        # the mean over samples, moved from the child's denominator to this level's (L / |U| is an integer)
        out = out * (L // len(samples))
        memo[(k, U)] = out
        return out

    total = numerators(0, (1 << C) - 1).sum(axis=0)
    return [Fraction(int(v), C * scale * L**K) for v in total]


def posterior_sampling_monte_carlo(
    num_episodes: int, n: int, rng: np.random.Generator, horizon: int | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Monte Carlo per-episode returns of the posterior-sampling AGENT under the suite's meta-test protocol.

    Runs :class:`~algorithms.posterior_sampling.exact.ExactPosteriorSamplingAgent` through the shared evaluator
    (:func:`~algorithms.common.evaluator.meta_test`) in the real batched GridWorld, on ``n`` goals drawn
    uniformly. Its agreement with the exact enumeration :func:`posterior_sampling_per_episode` checks the agent,
    the env and the evaluator against an independent computation. Returns, for ``return`` and ``success``, the
    (mean, standard error) per episode.
    """
    from algorithms.common.evaluator import meta_test
    from algorithms.posterior_sampling.exact import ExactPosteriorSamplingAgent

    goals = candidate_goals()
    tasks = goals[rng.integers(len(goals), size=n)]
    agent = ExactPosteriorSamplingAgent(seed=int(rng.integers(2**31)))
    kwargs = {} if horizon is None else {"horizon": horizon}
    rows = meta_test(agent, "gridworld", tasks, num_episodes, seed=int(rng.integers(2**31)), **kwargs)
    out = {}
    for value in ("return", "success"):
        values = rows.pivot(index="task_id", columns="episode", values=value).to_numpy(dtype=float)
        out[value] = (values.mean(axis=0), values.std(axis=0, ddof=1) / np.sqrt(n))
    return out


# ------------------------------------------------------------------------------------------------ public API
def per_episode_references(K: int) -> dict[str, list[float]]:
    """Per-episode expected returns of the three references on the benchmark's 5x5 GridWorld with K episodes."""
    spec = GridSpec()
    return {
        "optimal": [float(v) for v in optimal_per_episode(spec, K)],
        "bayes_optimal": [float(v) for v in plan_bayes_optimal(spec, K).per_episode],
        "posterior_sampling": [float(v) for v in posterior_sampling_per_episode(spec, K)],
    }


def build_reference_file(episodes: Sequence[int] = (4, 6), mc_rollouts: int = MC_ROLLOUTS) -> dict[str, Any]:
    """Everything the JSON file holds; the values are rounded to 6 decimals, the metadata says how they were made."""
    spec = GridSpec()
    out: dict[str, Any] = {
        "env": "gridworld",
        "description": (
            "Per-episode expected returns (expectation over the uniform goal) of the reference policies of the "
            "VariBAD paper (Zintgraf et al., fig. 1e and App. B.2 / fig. 12): optimal with known goal, "
            "Bayes-optimal, posterior sampling. Generated by `python -m algorithms.references.gridworld`."
        ),
        "grid": {
            "size": [spec.width, spec.height],
            "start": list(spec.start),
            "horizon": spec.horizon,
            "excluded_goals": sorted(list(c) for c in spec.excluded),
            "num_goals": len(spec.candidates),
            "goal_reward": float(spec.goal_reward),
            "step_reward": float(spec.step_reward),
        },
        "methods": {
            "optimal": "closed form: shortest path to the known goal, then noop on it; exact rational arithmetic",
            "bayes_optimal": (
                "exact Bayes-optimal policy of the BAMDP (horizon K x H, undiscounted total return): the belief is "
                "uniform over unvisited candidates, so the policy is an open-loop search until the goal is found; "
                "exact branch-and-bound dynamic programming over (position, unvisited set), integer arithmetic; "
                "verified against brute-force expectimax on small instances (tests/test_references.py); "
                "bayes_optimal_search_actions are the actions taken while the goal is unknown"
            ),
            "posterior_sampling": (
                "exact enumeration over goals and over the sampled candidates with their probabilities, exact "
                "rational arithmetic; checked against Monte Carlo rollouts in envs.gridworld.GridWorld (below)"
            ),
        },
        # no policy's expected return exceeds the known-goal optimum in any episode, not even one told the goal
        # (the oracle; the Bayes-optimal split bounds only policies that are not). A meta-test over every candidate
        # goal averages exactly that expectation, so the analysis keeps the confidence intervals of its mean below it
        "upper_bound": {"line": "optimal", "tasks": len(spec.candidates)},
        "tie_breaks": {"bayes_optimal": BAYES_TIE_BREAK, "posterior_sampling": PS_TIE_BREAK},
        "notes": (
            "several policies may be Bayes-optimal in total return and per-episode splits can in general depend on "
            "the tie-break; on this GridWorld they cannot: the optimal total equals the one-episode Bayes optimum "
            "plus (K - 1) times the known-goal optimum, and no policy can exceed either bound in its episodes "
            "(checked in tests/test_references.py)"
        ),
        "K": {},
        "success_notes": (
            "success_K: the share of goals entered at least once in each episode (the env's info['success']), "
            "exact, for the same three policies; the Bayes-optimal split is that of the plan in K (its tie-break): "
            "Bayes-optimal returns do not pin how many goals episode 1 finds"
        ),
        "success_K": {},
    }

    def checked(exact: list[Fraction], mc: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
        mean, se = mc
        z = np.abs(mean - np.array([float(v) for v in exact])) / np.where(se > 0, se, np.inf)
        return {"n": mc_rollouts, "seed": MC_SEED, "mean": [round(float(v), 6) for v in mean],
                "standard_error": [round(float(v), 6) for v in se], "max_abs_z": round(float(np.max(z)), 3)}

    for K in episodes:
        plan = plan_bayes_optimal(spec, K)
        ps = posterior_sampling_per_episode(spec, K)
        ps_success = posterior_sampling_per_episode(spec, K, value="success")
        mc = posterior_sampling_monte_carlo(K, mc_rollouts, np.random.default_rng(MC_SEED))
        out["K"][str(K)] = {
            "optimal": [round(float(v), 6) for v in optimal_per_episode(spec, K)],
            "bayes_optimal": [round(float(v), 6) for v in plan.per_episode],
            "posterior_sampling": [round(float(v), 6) for v in ps],
            "bayes_optimal_total": round(float(plan.value), 6),
            "bayes_optimal_total_exact": str(plan.value),
            "bayes_optimal_search_actions": list(plan.actions),
            "posterior_sampling_monte_carlo": checked(ps, mc["return"]),
        }
        out["success_K"][str(K)] = {
            "optimal": [round(float(v), 6) for v in optimal_success_per_episode(spec, K)],
            "bayes_optimal": [round(float(v), 6) for v in search_plan_success(spec, K, plan.actions)],
            "posterior_sampling": [round(float(v), 6) for v in ps_success],
            "posterior_sampling_monte_carlo": checked(ps_success, mc["success"]),
        }
    return out


def _dumps(obj: Any, indent: int = 0) -> str:
    """JSON with one key per line but every list on a single line (short, diff-friendly)."""
    if isinstance(obj, dict) and obj:
        pad = " " * (indent + 1)
        items = [f"{pad}{json.dumps(k)}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    return json.dumps(obj)


def main(argv: Sequence[str] | None = None) -> None:
    parser = command_line(__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_JSON, help="JSON file to write")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    data = build_reference_file()
    args.out.write_text(_dumps(data) + "\n")
    for block, unit in (("K", "return"), ("success_K", "success")):
        for K, refs in data[block].items():
            for name in ("optimal", "bayes_optimal", "posterior_sampling"):
                print(f"K={K} {unit:>7} {name:>18}: " + " ".join(f"{v:8.4f}" for v in refs[name]))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
