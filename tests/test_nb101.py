from __future__ import annotations

import csv
import gzip
import itertools

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from lightning_nas.spaces.nb101 import space as nb101_module
from lightning_nas.spaces.nb101 import cells as nb101_cells
from lightning_nas.spaces.base import Architecture, InvalidArchitectureError, get_space
from lightning_nas.spaces.nb101 import NB101, PATH_SLOTS, genotype_matrix
from lightning_nas.spaces.nb101.cells import EDGES, module_hash

CONV3, CONV1, POOL = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"


def read_rows(path) -> list[dict[str, str]]:
    with gzip.open(path, "rt") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def params_by_hash(shared) -> dict[str, int]:
    return {row["hash"]: int(row["params"]) for row in read_rows(shared / "nb101_hashed_30k.csv.gz")}


def arch(edges: list[tuple[int, int]], ops: list[int]) -> Architecture:
    return NB101.make([int(e in edges) for e in EDGES] + ops)


# --- the official hash -------------------------------------------------------------------
# (pruned matrix, ops, hash): each hash is a key of the official 30k table. The first four are
# NASLib graphs (nb101_graphs_500) whose parameter count equals the table's; the 7-vertex one is the
# enumeration's cell for the table's first hash (a wrong hash would not land among 30k of 2**128).
KNOWN_CELLS = [
    (
        "0100110001000000010010000010000001000000010000000",
        ["input", CONV3, POOL, CONV3, CONV3, CONV1, "output"],
        "00005c142e6f48ac74fdcf73e3439874",
    ),
    ("0100", ["input", "output"], "043721b9c7fe8c5fad811d47d83132ec"),
    ("011001000", ["input", CONV1, "output"], "09fc2d10bdd6225e167a6f81a22a3f06"),
    ("0110000100010000", ["input", CONV1, CONV1, "output"], "168e95938db8e7c52112e58c0f292079"),
    (
        "011100000001000110000001000001000000",
        ["input", CONV3, CONV1, CONV1, CONV1, "output"],
        "1870e21bcb3170417c9138189c7908ff",
    ),
]


@pytest.mark.parametrize("matrix,ops,expected", KNOWN_CELLS)
def test_hash_of_known_cells(matrix, ops, expected, params_by_hash):
    assert expected in params_by_hash
    a = NB101.from_matrix(matrix, ops)
    assert NB101.key(a) == NB101.canonical(a) == expected
    n = len(ops)
    labels = [-1, *(nb101_cells.OPS.index(op) for op in ops[1:-1]), -2]
    assert module_hash(np.array([int(c) for c in matrix]).reshape(n, n), labels) == expected


def test_nb101_500_graphs_match_the_hashed_table(shared, params_by_hash):
    """Issue proof: the 500 NASLib graphs, pruned and hashed, that appear in the official hashed
    table carry the same parameter count there (an independent implementation: 110 found, 109 equal)."""
    found = equal = 0
    for row in read_rows(shared / "nb101_graphs_500.csv.gz"):
        key = NB101.key(NB101.from_matrix(row["matrix"], row["ops"].split(",")))
        if key in params_by_hash:
            found += 1
            # params_m has 6 decimals: exact in units of one parameter
            equal += params_by_hash[key] == round(float(row["params_m"]) * 1e6)
    assert (found, equal) == (110, 109)


# --- validity and pruning ----------------------------------------------------------------
def test_pruning_drops_vertices_off_every_path():
    # 1 -> 2 dangles (2 reaches nowhere), 3 is unreachable from the input but feeds the output
    a = arch([(0, 1), (1, 6), (1, 2), (3, 6), (0, 4), (4, 6)], [0, 1, 2, 2, 0])
    matrix, ops = NB101.spec(a)
    assert ops == ["input", CONV3, POOL, "output"]
    assert matrix.tolist() == [[0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    compact = NB101.from_matrix(matrix, ops)
    assert NB101.key(compact) == NB101.key(a)
    assert NB101.to_graph(a).num_nodes == 4


def test_ops_of_pruned_vertices_do_not_change_the_cell():
    a = arch([(0, 1), (1, 6)], [0, 0, 0, 0, 0])
    b = arch([(0, 1), (1, 6), (2, 3)], [0, 2, 1, 2, 1])
    assert NB101.key(a) == NB101.key(b)
    np.testing.assert_array_equal(NB101.adjacency_encoding(a), NB101.adjacency_encoding(b))


def test_validity_rules():
    assert not NB101.is_valid(arch([(0, 1), (2, 6)], [0] * 5))  # input never reaches output
    chain = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)]
    assert NB101.is_valid(arch(chain + [(0, 6), (0, 2), (1, 3)], [0] * 5))  # 9 edges
    ten = arch(chain + [(0, 6), (0, 2), (1, 3), (2, 4)], [0] * 5)
    assert not NB101.is_valid(ten)
    assert "10 edges after pruning" in NB101.why_invalid(ten)
    # 10 edges in the genotype, 8 after pruning vertex 5 (as the benchmark counts): valid
    pruned_to_eight = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 6), (0, 6), (0, 2), (1, 3), (0, 5), (1, 5)]
    assert NB101.is_valid(arch(pruned_to_eight, [0] * 5))
    assert not NB101.is_valid(NB101.make([0] * 25))  # too short
    assert not NB101.is_valid(NB101.make([2] + [0] * 25))  # edge bit out of range
    assert not NB101.is_valid(NB101.make([1] + [0] * 20 + [3, 0, 0, 0, 0]))  # op out of range
    assert not NB101.is_valid(Architecture("nb201", arch([(0, 6)], [0] * 5).genotype))


def test_invalid_architecture_is_refused_with_reason():
    with pytest.raises(InvalidArchitectureError, match="no path leads from the input"):
        NB101.key(arch([(0, 1)], [0] * 5))
    with pytest.raises(InvalidArchitectureError, match="edge bits"):
        NB101.to_graph(NB101.make([0, 1]))


# --- strings and constructors --------------------------------------------------------------
def test_string_round_trip_and_format():
    a = arch([(0, 1), (1, 2), (2, 6), (0, 6)], [1, 2, 0, 0, 0])
    s = NB101.to_string(a)
    assert s.startswith("nb101:01000010010000")
    assert s.endswith(f":input,{CONV1},{POOL},{CONV3},{CONV3},{CONV3},output")
    assert NB101.from_string(s) == a
    assert str(a) == s
    assert get_space("nb101") is NB101


def test_from_string_reads_smaller_matrices():
    a = NB101.from_string(f"nb101:011001000:input,{POOL},output")
    assert NB101.spec(a)[1] == ["input", POOL, "output"]
    assert a.genotype[EDGES.index((0, 1))] == 1 and a.genotype[EDGES.index((1, 6))] == 1


@pytest.mark.parametrize(
    "text,message",
    [
        ("0100:input,output", "expected 'nb101:"),
        ("nb101:010:input,output", "not a square"),
        ("nb101:01x0:input,output", "only 0 and 1"),
        ("nb101:0100:input,conv3x3-bn-relu,output", "3 ops given for a 2x2"),
        ("nb101:001000010:input,conv3x3-bn-relu,output", "strictly upper triangular"),
        ("nb101:011001000:input,conv5x5,output", "unknown NAS-Bench-101 op"),
        ("nb101:011001000:conv3x3-bn-relu,input,output", "must start with 'input'"),
        ("nb101:000001000:input,conv3x3-bn-relu,output", "no path leads from the input"),
        ("nb101:" + "0" * 64 + ":" + ",".join(["input"] + [CONV3] * 6 + ["output"]), "2..7 vertices"),
    ],
)
def test_from_string_errors(text, message):
    with pytest.raises(InvalidArchitectureError, match=message):
        NB101.from_string(text)


def test_from_matrix_accepts_nested_lists_and_arrays():
    ops = ["input", CONV3, "output"]
    by_list = NB101.from_matrix([[0, 1, 1], [0, 0, 1], [0, 0, 0]], ops)
    assert by_list == NB101.from_matrix(np.array([[0, 1, 1], [0, 0, 1], [0, 0, 0]]), ops)
    assert by_list == NB101.from_matrix("011001000", ops)


# --- the enumeration (small sizes here; the full run is benchmarks/bench_nb101_enumeration.py) ---
@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_fingerprint_groups_equal_md5_groups(n):
    """The vectorised grouping must split the labelled graphs exactly as the MD5 hash does."""
    matrices, labelings = nb101_cells._full_dags(n), nb101_cells._labelings(n)
    prints = nb101_cells._fingerprints(matrices, labelings).ravel()
    hashes = [module_hash(m, lab) for m in matrices for lab in labelings.tolist()]
    by_print = {}
    for p, h in zip(prints.tolist(), hashes):
        by_print.setdefault(p, set()).add(h)
    assert all(len(group) == 1 for group in by_print.values())
    assert len(by_print) == len(set(hashes))


def test_full_dags_are_exactly_the_cells_without_dangling_vertices():
    n = 5
    full = {m.tobytes() for m in nb101_cells._full_dags(n)}
    slots = list(itertools.combinations(range(n), 2))
    for bits in itertools.product((0, 1), repeat=len(slots)):
        m = np.zeros((n, n), dtype=np.uint8)
        for bit, (i, j) in zip(bits, slots):
            m[i, j] = bit
        on_path = nb101_cells.on_path_vertices(m)
        expected = on_path == list(range(n)) and m.sum() <= nb101_cells.MAX_EDGES
        assert (m.tobytes() in full) == expected


@pytest.fixture(scope="module")
def small_table():
    return nb101_cells.build_cell_table(max_vertices=5)


def test_small_enumeration_and_from_key(small_table, monkeypatch):
    assert len(small_table) == 1 + 6 + 84 + 2441  # unique cells of 2..5 vertices
    monkeypatch.setattr(nb101_module, "cell_table", lambda: small_table)
    archs = list(NB101.enumerate())
    keys = [NB101.key(a) for a in archs]
    assert keys == sorted(keys) and len(set(keys)) == len(archs)
    assert keys == [h.decode() for h in small_table.hashes.tolist()]
    for a in archs[:: len(archs) // 50]:
        assert NB101.from_key(NB101.key(a)) == a
    with pytest.raises(InvalidArchitectureError, match="not the module hash"):
        NB101.from_key("0" * 32)


def test_cache_round_trip_and_damaged_file(small_table, tmp_path):
    path = tmp_path / "cells.npz"
    nb101_cells._write_cache(path, small_table)
    again = nb101_cells._read_cache(path, rows=len(small_table))
    np.testing.assert_array_equal(again.hashes, small_table.hashes)
    np.testing.assert_array_equal(again.genotypes, small_table.genotypes)
    assert nb101_cells._read_cache(path) is None  # not the full table
    path.write_bytes(path.read_bytes()[:1000])
    assert nb101_cells._read_cache(path, rows=len(small_table)) is None
    assert list(tmp_path.iterdir()) == [path]  # no temporary files left behind


# --- encodings -----------------------------------------------------------------------------
def test_path_encoding_counts_each_op_sequence_once():
    # input -> conv3 -> pool -> output, input -> pool, input -> output
    a = NB101.from_matrix("0111001000010000", ["input", CONV3, POOL, "output"])
    encoding = NB101.path_encoding(a)
    assert encoding.shape == (PATH_SLOTS,) == (364,)
    # slots: [] -> 0; [pool] -> 1 + 2; [conv3, pool] -> 4 + 0*3 + 2
    assert np.flatnonzero(encoding).tolist() == [0, 3, 6]


def test_graph_and_adjacency_encoding():
    a = NB101.from_matrix("0111001000010000", ["input", CONV3, POOL, "output"])
    g = NB101.to_graph(a)
    assert g.x.argmax(dim=1).tolist() == [0, 2, 4, 1]  # input, conv3x3, maxpool, output
    assert sorted(map(tuple, g.edge_index.t().tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (2, 3)]
    enc = NB101.adjacency_encoding(a)
    assert enc.shape == (21 + 15,)
    edges = {EDGES[i] for i in np.flatnonzero(enc[:21])}
    assert edges == {(0, 1), (0, 2), (0, 6), (1, 2), (2, 6)}  # output moved to vertex 6
    assert enc[21:].reshape(5, 3).tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_choices():
    assert NB101.choices() == [2] * 21 + [3] * 5


# --- variation -----------------------------------------------------------------------------
def test_neighbours_of_a_cell():
    a = arch([(0, 1), (1, 6), (0, 6)], [0, 0, 0, 0, 0])
    near = NB101.neighbours(a)
    assert all(NB101.edit_distance(a, b) == 1 and NB101.is_valid(b) for b in near)
    assert len(near) == len(set(near))
    # one flip cannot cut both input->output routes, so all 21 flips and 10 op changes are valid
    assert len(near) == 31
    distinct = NB101.neighbours(a, distinct=True)
    keys = [NB101.key(b) for b in distinct]
    assert NB101.key(a) not in keys and len(keys) == len(set(keys)) < len(near)


def test_crossover_falls_back_to_first_parent_when_no_child_is_valid():
    class NoValidChild(type(NB101)):
        def is_valid(self, a):
            return False

    x = arch([(0, 6)], [0] * 5)
    y = arch([(0, 1), (1, 6)], [1] * 5)
    assert NoValidChild().crossover(x, y, np.random.default_rng(0)) == x


# --- properties ----------------------------------------------------------------------------
seeds = st.integers(0, 2**32 - 1)


@st.composite
def valid_archs(draw):
    genotype = draw(st.lists(st.integers(0, 1), min_size=21, max_size=21))
    genotype += draw(st.lists(st.integers(0, 2), min_size=5, max_size=5))
    a = NB101.make(genotype)
    assume(NB101.is_valid(a))
    return a


archs = st.one_of(seeds.map(lambda s: NB101.sample(np.random.default_rng(s))), valid_archs())


@settings(max_examples=60, deadline=None)
@given(a=archs, b=archs, seed=seeds)
def test_every_operation_returns_valid_architectures(a, b, seed):
    rng = np.random.default_rng(seed)
    assert NB101.is_valid(a) and NB101.is_valid(b)
    assert NB101.is_valid(NB101.mutate(a, rng))
    assert NB101.is_valid(NB101.crossover(a, b, rng))
    assert all(NB101.is_valid(n) for n in NB101.neighbours(a))


def topological_order(matrix: np.ndarray, priority: list[int]) -> list[int]:
    """A vertex order with every edge pointing forward, input first, output last, ties by `priority`."""
    n = len(matrix)
    remaining_in = matrix.sum(axis=0).tolist()
    ready, order = [v for v in range(n) if remaining_in[v] == 0], []
    while ready:
        v = min(ready, key=lambda u: (u != 0, u == n - 1, priority[u]))
        ready.remove(v)
        order.append(v)
        for w in np.flatnonzero(matrix[v]).tolist():
            remaining_in[w] -= 1
            if remaining_in[w] == 0:
                ready.append(w)
    return order


@settings(max_examples=60, deadline=None)
@given(a=archs, data=st.data())
def test_key_is_invariant_under_relabelling_intermediate_vertices(a, data):
    pruned, ops = NB101.spec(a)
    n = len(ops)
    labels = [-1, *(nb101_cells.OPS.index(op) for op in ops[1:-1]), -2]
    shuffled = [0, *data.draw(st.permutations(range(1, n - 1))), n - 1]
    # the hash itself ignores vertex order, upper triangular or not
    assert module_hash(pruned[np.ix_(shuffled, shuffled)], [labels[v] for v in shuffled]) == NB101.key(a)

    # a random relabelling of the genotype's intermediate vertices that keeps it a forward DAG
    matrix = genotype_matrix(a.genotype)
    order = topological_order(matrix, data.draw(st.permutations(range(7))))  # new vertex i = old order[i]
    assert order[0] == 0 and order[-1] == 6 and sorted(order) == list(range(7))
    relabelled = matrix[np.ix_(order, order)]
    assert not np.tril(relabelled).any()
    b = NB101.make([*(relabelled[i, j] for i, j in EDGES), *(a.genotype[21 + v - 1] for v in order[1:-1])])
    assert NB101.key(b) == NB101.key(a)
    np.testing.assert_array_equal(NB101.path_encoding(b), NB101.path_encoding(a))


@settings(max_examples=60, deadline=None)
@given(a=archs)
def test_string_round_trip(a):
    assert NB101.from_string(NB101.to_string(a)) == a
    matrix, ops = NB101.spec(a)
    compact = NB101.from_matrix(matrix, ops)
    assert NB101.key(compact) == NB101.key(a)
    assert NB101.spec(compact)[0].tolist() == matrix.tolist()


@settings(max_examples=40, deadline=None)
@given(a=archs)
def test_neighbours_are_exactly_one_edit_away(a):
    near = NB101.neighbours(a)
    assert near and all(NB101.edit_distance(a, b) == 1 for b in near)
    # the complement: every valid one-edit genotype is listed
    assert len(near) == sum(
        NB101.is_valid(NB101.make(a.genotype[:i] + (v,) + a.genotype[i + 1 :]))
        for i, k in enumerate(NB101.choices())
        for v in range(k)
        if v != a.genotype[i]
    )


@settings(max_examples=30, deadline=None)
@given(seed=seeds)
def test_sample_is_reproducible_from_seed(seed):
    first = [NB101.sample(np.random.default_rng(seed)) for _ in range(2)]
    assert first[0] == first[1]
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    assert [NB101.sample(rng_a) for _ in range(5)] == [NB101.sample(rng_b) for _ in range(5)]


@settings(max_examples=40, deadline=None)
@given(a=archs)
def test_encodings_describe_the_pruned_cell(a):
    matrix, ops = NB101.spec(a)
    g = NB101.to_graph(a)
    assert g.num_nodes == len(ops) and g.edge_index.shape[1] == matrix.sum()
    assert g.x.sum(dim=1).eq(1).all()
    path = NB101.path_encoding(a)
    assert path.shape == (364,) and path.sum() >= 1  # at least one input->output path
    enc = NB101.adjacency_encoding(a)
    assert enc.shape == (36,) and enc[:21].sum() == matrix.sum()
