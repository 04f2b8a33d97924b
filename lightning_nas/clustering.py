"""K-medoids over Manhattan distance: the project's one clustering (DCL-ENAS hard-encoder prototypes).

The "alternate" (Voronoi-iteration) K-medoids of Park & Jun (2009), seeded by k-medoids++ from an
explicit `numpy.random.Generator`; being a local search it is restarted `n_init` times and the
lowest total distance is kept. Identical rows are clustered once with a multiplicity weight, which
is exact (the medoid objective is a weighted sum of distances) and makes path encodings cheap:
15,625 NAS-Bench-201 cells have only a few thousand distinct path encodings. Distances are computed
in row chunks so that N x P inputs of any N fit in memory: no N x N matrix is ever built.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lightning_nas.errors import ConfigError

#: rows per distance block; a block costs chunk x N x 4 bytes
DEFAULT_CHUNK = 2048


@dataclass(frozen=True)
class KMedoidsResult:
    medoids: np.ndarray  # [K] row indices into the input (first occurrence of each medoid row)
    labels: np.ndarray  # [N] cluster id of each input row, in 0..K-1
    distances: np.ndarray  # [N] Manhattan distance of each row to its medoid
    inertia: float  # sum of `distances`
    n_iter: int
    converged: bool

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.medoids))


def manhattan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n, P] x [m, P] -> [n, m] L1 distances; a matrix product when both sides are 0/1 (exact)."""
    if _is_binary(a) and _is_binary(b):
        # for binary rows |a - b|_1 = |a| + |b| - 2 a.b, which BLAS computes far faster than cdist
        return a.sum(1, keepdim=True) + b.sum(1) - 2.0 * (a @ b.T)
    return torch.cdist(a, b, p=1.0)


def kmedoids(
    x: np.ndarray | torch.Tensor,
    k: int,
    rng: np.random.Generator,
    max_iter: int = 100,
    n_init: int = 4,
    chunk: int = DEFAULT_CHUNK,
) -> KMedoidsResult:
    """Cluster the rows of `x` into `k` groups around medoid rows, minimising total L1 distance."""
    if n_init < 1:
        raise ConfigError(f"n_init must be >= 1, got {n_init}")
    points = _as_matrix(x)
    if not 1 <= k <= len(points):
        raise ConfigError(f"k must be between 1 and the number of rows ({len(points)}), got {k}")
    unique, first_index, inverse, counts = _unique_rows(points)
    if len(unique) < k:
        raise ConfigError(
            f"only {len(unique)} distinct rows for k={k} clusters; lower k (num_clusters) or use a larger pool"
        )
    data = torch.from_numpy(unique)
    weights = torch.from_numpy(counts.astype(np.float64))
    runs = [_alternate(data, weights, k, rng, max_iter, chunk) for _ in range(n_init)]
    # strict < keeps the earliest of equally good runs: the result depends on the seed only
    medoids, labels, dist, n_iter, converged = min(runs, key=lambda r: float(weights @ r[2].double()))

    row_labels = labels.numpy()[inverse]
    row_dist = dist.numpy()[inverse].astype(np.float64)
    return KMedoidsResult(
        medoids=first_index[medoids.numpy()],
        labels=row_labels,
        distances=row_dist,
        inertia=float(row_dist.sum()),
        n_iter=n_iter,
        converged=converged,
    )


# --- internals -----------------------------------------------------------------------------
def _as_matrix(x: np.ndarray | torch.Tensor) -> np.ndarray:
    points = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if points.ndim != 2 or len(points) == 0:
        raise ValueError(f"expected a non-empty [N, P] matrix of encodings, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("encodings contain NaN or infinite values")
    return points.astype(np.float32)


def _unique_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    unique, first_index, inverse, counts = np.unique(
        points, axis=0, return_index=True, return_inverse=True, return_counts=True
    )
    return np.ascontiguousarray(unique), first_index, inverse.reshape(-1), counts


def _is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


def _alternate(
    data: torch.Tensor, weights: torch.Tensor, k: int, rng: np.random.Generator, max_iter: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, bool]:
    """One seeded run: assign rows to the nearest medoid, move each medoid to its cluster's best
    member, repeat until the medoids stop moving."""
    medoids = _kmedoids_plus_plus(data, weights, k, rng, chunk)
    labels, dist = _assign(data, medoids, chunk)
    for n_iter in range(1, max_iter + 1):
        new_medoids = torch.stack([_cluster_medoid(data, weights, labels, c, medoids[c], chunk) for c in range(k)])
        if torch.equal(new_medoids, medoids):
            return medoids, labels, dist, n_iter, True
        medoids = new_medoids
        labels, dist = _assign(data, medoids, chunk)
    return medoids, labels, dist, max_iter, False


def _assign(data: torch.Tensor, medoids: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest medoid of every row (ties: the lowest cluster id) and the distance to it."""
    centres = data[medoids]
    labels, dist = [], []
    for start in range(0, len(data), chunk):
        d = manhattan(data[start : start + chunk], centres)
        best, arg = d.min(1)
        labels.append(arg)
        dist.append(best)
    return torch.cat(labels), torch.cat(dist)


def _kmedoids_plus_plus(
    data: torch.Tensor, weights: torch.Tensor, k: int, rng: np.random.Generator, chunk: int
) -> torch.Tensor:
    """k-medoids++: each next medoid drawn with probability proportional to multiplicity x squared
    distance to the nearest medoid so far (the k-means++ rule, which spreads the seeds)."""
    first = int(rng.choice(len(data), p=(weights / weights.sum()).numpy()))
    chosen = [first]
    nearest = _distance_to(data, data[first : first + 1], chunk)
    for _ in range(1, k):
        mass = (weights * nearest.double() ** 2).numpy()
        # chosen rows have distance 0, so they are never drawn again; distinct rows guarantee mass > 0
        nxt = int(rng.choice(len(data), p=mass / mass.sum()))
        chosen.append(nxt)
        nearest = torch.minimum(nearest, _distance_to(data, data[nxt : nxt + 1], chunk))
    return torch.tensor(chosen, dtype=torch.long)


def _distance_to(data: torch.Tensor, centre: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([manhattan(data[s : s + chunk], centre)[:, 0] for s in range(0, len(data), chunk)])


def _cluster_medoid(
    data: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, cluster: int, current: torch.Tensor, chunk: int
) -> torch.Tensor:
    """The member minimising the weighted sum of distances to all members (ties: keep the current one)."""
    members = torch.nonzero(labels == cluster).flatten()
    rows, w = data[members], weights[members]
    cost = torch.cat([manhattan(rows[s : s + chunk], rows).double() @ w for s in range(0, len(rows), chunk)])
    current_cost = cost[members == current]
    best = int(torch.argmin(cost))
    if current_cost.numel() and cost[best] >= current_cost[0]:
        return current
    return members[best]
