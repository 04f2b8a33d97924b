"""Pareto fronts: non-dominated sorting, crowding distance, exact hypervolume, greedy hypervolume improvement."""
import itertools

import numpy as np
import pytest

from lightning_nas.search.pareto import (crowded_order, crowding_distance, epsilon_to_front, hvi_order, hypervolume,
                                         nondominated, nondominated_sort)


def brute_force_hypervolume(points: np.ndarray, reference: np.ndarray, cells: int = 40) -> float:
    """The dominated share of a grid over [0, reference] (cell centres), times the box's volume."""
    axes = [(np.arange(cells) + 0.5) / cells * r for r in reference]
    grid = np.array(list(itertools.product(*axes)))
    covered = (points[None, :, :] <= grid[:, None, :]).all(-1).any(1)
    return covered.mean() * float(np.prod(reference))


def test_nondominated_sort_gives_each_point_its_front():
    points = np.array([[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [6, 6], [2, 2]])
    assert nondominated_sort(points).tolist() == [0, 0, 0, 1, 2, 3, 0]
    assert nondominated(points).tolist() == [True, True, True, False, False, False, True]
    assert nondominated_sort(np.zeros((0, 2))).tolist() == []


def test_crowding_distance_and_the_crowded_comparison():
    front = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]])
    distance = crowding_distance(front)
    assert np.isinf(distance[[0, 3]]).all()
    assert distance[1] == pytest.approx(3 / 4 + 3 / 4) and distance[2] == pytest.approx(3 / 4 + 3 / 4)
    points = np.vstack([front, [[5.0, 5.0]], [[0.5, 0.5]]])
    violation = np.array([0, 0, 0, 0, 0, 1.0])  # the best point breaks a constraint: it comes last
    order = np.argsort(crowded_order(points, violation), kind="stable").tolist()
    assert order[:2] == [0, 3] and set(order[2:4]) == {1, 2} and order[4:] == [4, 5]


@pytest.mark.parametrize("dims", [2, 3])
def test_hypervolume_is_exact(dims):
    rng = np.random.default_rng(dims)
    points = rng.uniform(0, 1, size=(12, dims))
    reference = np.ones(dims)
    exact = hypervolume(points, reference)
    assert exact == pytest.approx(brute_force_hypervolume(points, reference), abs=0.03)
    front = points[nondominated(points)]
    assert hypervolume(front, reference) == pytest.approx(exact)  # dominated points add nothing
    assert hypervolume(np.array([[0.5] * dims]), reference) == pytest.approx(0.5**dims)
    assert hypervolume(np.array([[1.5] + [0.0] * (dims - 1)]), reference) == 0.0  # beyond the reference
    assert hypervolume(np.zeros((0, dims)), reference) == 0.0


def test_two_dimensional_hypervolume_by_hand():
    points = np.array([[0.2, 0.6], [0.5, 0.3], [0.8, 0.1]])
    # slabs left to right: (1-0.2)*(1-0.6) + (1-0.5)*(0.6-0.3) + (1-0.8)*(0.3-0.1)
    assert hypervolume(points, np.ones(2)) == pytest.approx(0.32 + 0.15 + 0.04)


def test_hvi_order_takes_the_largest_improvement_then_the_nearest_to_the_front():
    front = np.array([[0.2, 0.6], [0.6, 0.2]])
    candidates = np.array([[0.7, 0.7], [0.4, 0.4], [0.3, 0.3], [0.65, 0.65], [0.1, 0.9]])
    order = hvi_order(candidates, front, np.ones(2))
    assert order[:2] == [2, 4]  # [0.3, 0.3] adds most; [0.1, 0.9] still adds after it
    assert order[2:] == [1, 3, 0]  # the rest by how far they are from entering the front
    assert epsilon_to_front(candidates, front)[2] < 0 < epsilon_to_front(candidates, front)[0]
    assert hvi_order(candidates, front, np.ones(2), k=1) == [2]
