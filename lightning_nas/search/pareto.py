"""Pareto fronts of points to minimise: non-dominated sorting, crowding distance, exact hypervolume
and greedy hypervolume-improvement selection. Points are rows of an [n, m] array, every column to be
minimised (`lightning_nas.search.objectives` turns objectives into that form and normalises them).
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr


def dominance(points: np.ndarray) -> np.ndarray:
    """[n, n] bool: row i dominates row j (no worse in every column, better in one)."""
    p = np.asarray(points, dtype=np.float64)
    no_worse = (p[:, None, :] <= p[None, :, :]).all(-1)
    better = (p[:, None, :] < p[None, :, :]).any(-1)
    return no_worse & better


def nondominated_sort(points: np.ndarray) -> np.ndarray:
    """Front number of each point (0: not dominated by any; k: dominated only by fronts < k),
    the fast non-dominated sort of NSGA-II (Deb et al., 2002)."""
    n = len(points)
    ranks = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return ranks
    dominates = dominance(points)
    dominated_by = dominates.sum(0)
    front = np.flatnonzero(dominated_by == 0)
    level = 0
    while front.size:
        ranks[front] = level
        dominated_by = dominated_by - dominates[front].sum(0)
        dominated_by[ranks >= 0] = -1
        front = np.flatnonzero(dominated_by == 0)
        level += 1
    return ranks


def nondominated(points: np.ndarray) -> np.ndarray:
    """Bool mask of the points no other point dominates (duplicates of a front point stay in)."""
    return nondominated_sort(points) == 0 if len(points) else np.zeros(0, dtype=bool)


def crowding_distance(points: np.ndarray) -> np.ndarray:
    """NSGA-II's crowding distance of each point within its set: the sum over columns of the gap
    between its neighbours in that column, divided by the column's range; the extremes are infinite."""
    p = np.asarray(points, dtype=np.float64)
    n, m = p.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(p[:, j], kind="stable")
        column = p[order, j]
        span = column[-1] - column[0]
        distance[order[[0, -1]]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def crowded_order(points: np.ndarray, violation: np.ndarray | None = None) -> np.ndarray:
    """A key to sort ascending by NSGA-II's crowded comparison: feasible before infeasible (less
    violation first, Deb's constraint domination), then the lower front, then the larger crowding
    distance within the front."""
    p = np.asarray(points, dtype=np.float64)
    n = len(p)
    violation = np.zeros(n) if violation is None else np.asarray(violation, dtype=np.float64)
    key = np.zeros(n)
    feasible = violation <= 0
    if feasible.any():
        ranks = nondominated_sort(p[feasible])
        crowding = np.zeros(len(ranks))
        for r in np.unique(ranks):
            crowding[ranks == r] = crowding_distance(p[feasible][ranks == r])
        key[feasible] = ranks + 1.0 / (1.0 + crowding)  # in (rank, rank + 1]; infinite crowding -> rank
    top = key[feasible].max() + 1 if feasible.any() else 0.0
    key[~feasible] = top + violation[~feasible]
    return key


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """The exact volume dominated by `points` and bounded by `reference` (points not better than the
    reference in every column add nothing): a sweep in 2-D, slicing along the last column above."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, len(reference))
    r = np.asarray(reference, dtype=np.float64)
    p = p[(p < r).all(1)]
    if len(p) == 0:
        return 0.0
    if p.shape[1] == 1:
        return float(r[0] - p[:, 0].min())
    if p.shape[1] == 2:
        p = p[np.lexsort((p[:, 1], p[:, 0]))]
        volume, low = 0.0, r[1]
        for x, y in p:
            if y < low:
                volume += (r[0] - x) * (low - y)
                low = y
        return float(volume)
    p = p[np.argsort(p[:, -1], kind="stable")]
    volume = 0.0
    for i in range(len(p)):
        top = p[i + 1, -1] if i + 1 < len(p) else r[-1]
        if top > p[i, -1]:
            volume += (top - p[i, -1]) * hypervolume(p[: i + 1, :-1], r[:-1])
    return float(volume)


def epsilon_to_front(candidates: np.ndarray, front: np.ndarray) -> np.ndarray:
    """The additive epsilon by which each candidate would have to improve in every column to stop
    being weakly dominated by `front` (<= 0: it is not dominated)."""
    c = np.asarray(candidates, dtype=np.float64)
    if len(front) == 0:
        return np.full(len(c), -np.inf)
    f = np.asarray(front, dtype=np.float64)
    return (c[:, None, :] - f[None, :, :]).min(-1).max(1)


def hvi_order(candidates: np.ndarray, front: np.ndarray, reference: np.ndarray, k: int | None = None) -> list[int]:
    """Indices of up to `k` candidates (all by default) in the order of a greedy hypervolume-improvement
    selection: each next one adds the most hypervolume to `front` plus the candidates chosen before
    it (their estimates believed). Once no candidate adds any, the rest follow by `epsilon_to_front`
    (closest to entering the front first); ties go to the earlier candidate."""
    c = np.asarray(candidates, dtype=np.float64).reshape(-1, len(reference))
    current = np.asarray(front, dtype=np.float64).reshape(-1, len(reference))
    k = len(c) if k is None else min(k, len(c))
    chosen: list[int] = []
    open_ = np.ones(len(c), dtype=bool)
    while len(chosen) < k:
        epsilon = np.full(len(c), np.inf)
        epsilon[open_] = epsilon_to_front(c[open_], current)
        gain = np.zeros(len(c))
        base = hypervolume(current, reference)
        for i in np.flatnonzero(epsilon < 0):
            gain[i] = hypervolume(np.vstack([current, c[i]]), reference) - base
        if gain.max() <= 0:  # nothing adds hypervolume: the rest by how near they come to the front
            rest = [int(i) for i in np.lexsort((np.arange(len(c)), epsilon)) if open_[i]]
            return chosen + rest[: k - len(chosen)]
        pick = int(np.lexsort((np.arange(len(c)), epsilon, -gain))[0])
        chosen.append(pick)
        open_[pick] = False
        current = np.vstack([current, c[pick]])
    return chosen


def expected_improvement_2d(mean: np.ndarray, sigma: float, cost: np.ndarray, front: np.ndarray,
                            reference: np.ndarray) -> np.ndarray:
    """Expected hypervolume improvement over a 2-D `front` (columns: uncertain, exact; both minimised) of
    candidates whose first column is Gaussian (`mean`, `sigma`) and whose second is known (`cost`), in
    closed form: the improvement at first-column level t is the stretch of the second column between
    the candidate and the front's best among points at most t, weighted by P[value <= t]."""
    mean, cost = np.asarray(mean, dtype=np.float64), np.asarray(cost, dtype=np.float64)
    f = np.asarray(front, dtype=np.float64).reshape(-1, 2)
    f = f[(f < reference).all(1)]
    levels = np.unique(f[:, 0])  # where the front's best cost at level t steps down
    best = np.array([f[f[:, 0] <= t, 1].min() for t in levels])
    cuts = np.concatenate([levels, [reference[0]]])  # segment k: [cuts[k-1], cuts[k]), the first from -inf
    bound = np.concatenate([[reference[1]], best])  # the front's best cost on segment k

    def integral(t: np.ndarray) -> np.ndarray:  # int_-inf^t P[value <= s] ds
        if sigma <= 0:
            return np.maximum(t - mean[:, None], 0.0)
        z = (t - mean[:, None]) / sigma
        return sigma * (z * ndtr(z) + np.exp(-0.5 * z**2) / np.sqrt(2 * np.pi))

    upper = integral(cuts[None, :])
    mass = np.diff(np.concatenate([np.zeros((len(mean), 1)), upper], axis=1), axis=1)
    return (np.maximum(bound[None, :] - cost[:, None], 0.0) * mass).sum(1)


def expected_improvement_order(mean: np.ndarray, sigma: float, cost: np.ndarray, front: np.ndarray,
                               reference: np.ndarray, k: int | None = None) -> list[int]:
    """Like `hvi_order` for `expected_improvement_2d`: each next candidate has the largest expected
    improvement over `front` plus the candidates chosen before it (at their means); once none
    expects any, the rest follow `hvi_order`'s rule at their means."""
    points = np.stack([np.asarray(mean, dtype=np.float64), np.asarray(cost, dtype=np.float64)], axis=1)
    current = np.asarray(front, dtype=np.float64).reshape(-1, 2)
    k = len(points) if k is None else min(k, len(points))
    chosen: list[int] = []
    open_ = np.ones(len(points), dtype=bool)
    while len(chosen) < k:
        gain = np.full(len(points), -np.inf)
        gain[open_] = expected_improvement_2d(points[open_, 0], sigma, points[open_, 1], current, reference)
        if gain.max() <= 0:
            rest = np.flatnonzero(open_)
            return chosen + [int(rest[i]) for i in hvi_order(points[rest], current, reference, k - len(chosen))]
        pick = int(np.argmax(gain))
        chosen.append(pick)
        open_[pick] = False
        current = np.vstack([current, points[pick]])
    return chosen
