"""Property tests of the cell-on-edges spaces (NB201, TNB101-micro), DARTS / NB301 and a layer-wise space."""
from __future__ import annotations

import csv
import gzip
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from lightning_nas.encodings.graph import to_batch
from lightning_nas.errors import CapabilityError
from lightning_nas.spaces import InvalidArchitectureError, get_space
from lightning_nas.spaces.base import Architecture
from lightning_nas.spaces.darts import DARTSSpace

#: a layer-wise space with positions of 3, 2, 4, 1 and 3 choices (a one-choice position is fixed)
LAYERWISE = get_space({"class_path": "lightning_nas.spaces.LayerwiseSpace", "init_args": {
    "name": "layerwise_test",
    "choices": [["identity", "mb3_k3", "mb6_k5"], ["k3", "k5"], ["identity", "mb3_k3", "mb6_k5", "mb6_k7"], ["w8"],
                ["a", "b", "c"]],
}})
SPACES = ["nb201", "tnb101_micro", "darts", "layerwise_test"]
NEIGHBOURS = {"nb201": 24, "tnb101_micro": 18, "darts": 120, "layerwise_test": 2 + 1 + 3 + 0 + 2}
settings.register_profile("spaces", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("spaces")


# --- strategies ------------------------------------------------------------------------------
def edge_cells(name: str) -> st.SearchStrategy[Architecture]:
    space = get_space(name)
    genes = st.lists(st.integers(0, len(space.ops) - 1), min_size=6, max_size=6)
    return genes.map(space.make)


@st.composite
def darts_archs(draw) -> Architecture:
    genes = []
    for _cell in range(2):
        for node in range(4):
            sources = draw(st.lists(st.integers(0, node + 1), min_size=2, max_size=2, unique=True))
            ops = draw(st.lists(st.integers(0, 6), min_size=2, max_size=2))
            genes += [sources[0], ops[0], sources[1], ops[1]]
    return get_space("darts").make(genes)


def layerwise_archs() -> st.SearchStrategy[Architecture]:
    return st.tuples(*(st.integers(0, c - 1) for c in LAYERWISE.choices())).map(LAYERWISE.make)


def archs(name: str) -> st.SearchStrategy[Architecture]:
    if name == "layerwise_test":
        return layerwise_archs()
    return darts_archs() if name == "darts" else edge_cells(name)


def read_arch_column(path: Path) -> list[str]:
    with gzip.open(path, "rt", newline="") as f:
        return [row["arch"] for row in csv.DictReader(f)]


# --- every operation returns valid architectures ----------------------------------------------
@pytest.mark.parametrize("name", SPACES)
@given(seed=st.integers(0, 2**32 - 1))
def test_sampling_is_valid_and_reproducible(name, seed):
    space = get_space(name)
    first = [space.sample(np.random.default_rng(seed)) for _ in range(3)]
    again = [space.sample(np.random.default_rng(seed)) for _ in range(3)]
    assert first == again
    rng = np.random.default_rng(seed)
    batch = [space.sample(rng) for _ in range(20)]
    assert all(space.is_valid(a) for a in batch)
    assert len(set(batch)) > 1
    assert all(0 <= g < c for a in batch for g, c in zip(a.genotype, space.choices()))


@pytest.mark.parametrize("name", SPACES)
@given(data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_mutate_and_crossover_are_valid(name, data, seed):
    space = get_space(name)
    a, b = data.draw(archs(name)), data.draw(archs(name))
    rng = np.random.default_rng(seed)
    child = space.crossover(a, b, rng)
    mutant = space.mutate(a, rng)
    assert space.is_valid(child) and space.is_valid(mutant)
    assert mutant in space.neighbours(a)
    assert space.crossover(a, a, rng) == a
    # every gene of the child comes from a parent, and the child lies between them
    assert all(g in (x, y) for g, x, y in zip(child.genotype, a.genotype, b.genotype))
    assert space.edit_distance(a, child) + space.edit_distance(child, b) == space.edit_distance(a, b)


@pytest.mark.parametrize("name", SPACES)
@given(data=st.data())
def test_neighbours_are_exactly_one_edit_away(name, data):
    space = get_space(name)
    a = data.draw(archs(name))
    neighbours = space.neighbours(a)
    assert len(neighbours) == NEIGHBOURS[name]
    assert len(set(neighbours)) == len(neighbours)
    assert all(space.is_valid(n) and space.edit_distance(a, n) == 1 for n in neighbours)


@pytest.mark.parametrize("name", SPACES)
@given(data=st.data())
def test_edit_distance_is_a_metric(name, data):
    space = get_space(name)
    a, b, c = (data.draw(archs(name)) for _ in range(3))
    assert space.edit_distance(a, a) == 0
    assert space.edit_distance(a, b) == space.edit_distance(b, a)
    assert space.edit_distance(a, c) <= space.edit_distance(a, b) + space.edit_distance(b, c)


@pytest.mark.parametrize("name", SPACES)
@given(data=st.data())
def test_strings_round_trip(name, data):
    space = get_space(name)
    a = data.draw(archs(name))
    s = space.to_string(a)
    assert space.from_string(s) == a
    assert str(a) == s


def test_every_nb201_table_string_round_trips(shared):
    space = get_space("nb201")
    strings = read_arch_column(shared / "nb201_200ep.csv.gz")
    assert len(strings) == 15_625
    assert [space.to_string(space.from_string(s)) for s in strings] == strings
    assert set(strings) == {space.to_string(a) for a in space.enumerate()}


def test_every_tnb101_table_string_round_trips(shared):
    space = get_space("tnb101_micro")
    strings = read_arch_column(shared / "tnb101_micro.csv.gz")
    assert len(strings) == 4_096
    assert [space.to_string(space.from_string(s)) for s in strings] == strings
    assert set(strings) == {space.to_string(a) for a in space.enumerate()}


@pytest.mark.parametrize(("name", "size"), [("nb201", 15_625), ("tnb101_micro", 4_096)])
def test_enumerate_yields_every_architecture_once(name, size):
    space = get_space(name)
    everything = list(space.enumerate())
    assert len(everything) == len(set(everything)) == size
    assert all(space.is_valid(a) for a in everything)


def test_darts_is_too_large_to_enumerate():
    space = get_space("darts")
    assert not space.supports("enumerate") and get_space("nb201").supports("enumerate")
    with pytest.raises(CapabilityError, match="the darts search space has no enumeration"):
        next(space.enumerate())


# --- canonical keys: cell-on-edges -------------------------------------------------------------
def evaluate_edge_cell(space, a: Architecture, functions: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The cell's output when every op name is one fixed random nonlinear map."""
    from lightning_nas.spaces.cell_on_edges import EDGES

    nodes = [x]
    for dst in range(1, 4):
        total = np.zeros_like(x)
        for e, (src, d) in enumerate(EDGES):
            op = space.ops[a.genotype[e]]
            if d != dst or op == "none":
                continue
            total = total + (nodes[src] if op == "skip_connect" else np.tanh(functions[op] @ nodes[src]))
        nodes.append(total)
    return nodes[-1]


@pytest.mark.parametrize("name", ["nb201", "tnb101_micro"])
def test_canonical_key_is_exactly_the_computed_function(name):
    """Equal keys <=> equal outputs when each op is a fixed random map (skip = identity, none = 0)."""
    space = get_space(name)
    rng = np.random.default_rng(0)
    functions = {op: rng.normal(size=(8, 8)) for op in space.ops}
    x = rng.normal(size=8)
    outputs: dict[str, np.ndarray] = {}
    for a in space.enumerate():
        y = evaluate_edge_cell(space, a, functions, x)
        key = space.canonical(a)
        if key in outputs:
            np.testing.assert_allclose(y, outputs[key], atol=1e-9, err_msg=space.to_string(a))
        else:
            outputs[key] = y
    distinct_functions = {tuple(np.round(y, 8)) for y in outputs.values()}
    assert len(distinct_functions) == len(outputs)
    assert len(outputs) < space.choices()[0] ** 6  # real merges happen


@pytest.mark.parametrize("name", ["nb201", "tnb101_micro"])
@given(data=st.data())
def test_cut_off_edges_do_not_change_the_key(name, data):
    space = get_space(name)
    a = data.draw(archs(name))
    other_ops = st.integers(0, len(space.ops) - 1)
    # edge 3<-2 is none: node 2 is dead, so edges 2<-0 and 2<-1 do not matter
    g = list(a.genotype)
    g[5] = space.none_op
    h = list(g)
    h[1], h[2] = data.draw(other_ops), data.draw(other_ops)
    assert space.canonical(space.make(g)) == space.canonical(space.make(h))
    # edge 1<-0 is none: node 1 is zero, so edges 2<-1 and 3<-1 carry nothing
    g = list(a.genotype)
    g[0] = space.none_op
    h = list(g)
    h[2], h[4] = data.draw(other_ops), data.draw(other_ops)
    assert space.canonical(space.make(g)) == space.canonical(space.make(h))


@pytest.mark.parametrize("name", ["nb201", "tnb101_micro"])
@given(data=st.data())
def test_independent_nodes_can_swap_roles(name, data):
    """With no edge 2<-1, nodes 1 and 2 are interchangeable: swap 1<-0/2<-0 and 3<-1/3<-2."""
    space = get_space(name)
    g = list(data.draw(archs(name)).genotype)
    g[2] = space.none_op
    swapped = [g[1], g[0], g[2], g[3], g[5], g[4]]
    assert space.canonical(space.make(g)) == space.canonical(space.make(swapped))


def test_nb201_skip_then_conv_equals_conv():
    space = get_space("nb201")
    direct = space.from_string("|none~0|+|none~0|none~1|+|nor_conv_3x3~0|none~1|none~2|")
    through_skip = space.from_string("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|none~2|")
    different = space.from_string("|skip_connect~0|+|none~0|none~1|+|none~0|nor_conv_1x1~1|none~2|")
    assert space.canonical(direct) == space.canonical(through_skip) != space.canonical(different)


@pytest.mark.parametrize("name", ["nb201", "tnb101_micro"])
def test_representative_stands_for_its_whole_class(name):
    space = get_space(name)
    representatives: dict[str, set[Architecture]] = {}
    for a in space.enumerate():
        r = space.representative(a)
        assert space.canonical(r) == space.canonical(a)
        representatives.setdefault(space.canonical(a), set()).add(r)
    assert all(len(members) == 1 for members in representatives.values())
    # edge 3<-2 is none, so the ops into node 2 are dead: the representative has none there
    dead = space.make((1, 2, 3, 1, 2, 0))
    assert space.representative(dead).genotype.count(space.none_op) >= 3


# --- canonical keys: DARTS -------------------------------------------------------------------
def darts_edge_sets(a: Architecture) -> list[set[tuple[int, int, int]]]:
    """Each cell as its set of (source, target, op) edges."""
    cells = []
    for c in range(2):
        genes = a.genotype[16 * c:16 * (c + 1)]
        cells.append({(genes[k], 2 + k // 4, genes[k + 1]) for k in range(0, 16, 2)})
    return cells


def relabel_edges(edges: set[tuple[int, int, int]], perm: tuple[int, ...]) -> set[tuple[int, int, int]]:
    def new(v: int) -> int:
        return v if v < 2 else 2 + perm[v - 2]

    return {(new(s), new(t), op) for s, t, op in edges}


def darts_isomorphic(a: Architecture, b: Architecture) -> bool:
    """By definition: some relabelling of the intermediate nodes maps each cell's edges onto b's."""
    return all(
        any(relabel_edges(ea, perm) == eb for perm in itertools.permutations(range(4)))
        for ea, eb in zip(darts_edge_sets(a), darts_edge_sets(b))
    )


def darts_relabel(a: Architecture, perms: tuple[tuple[int, ...], tuple[int, ...]]) -> Architecture | None:
    """Node i of cell c becomes node perms[c][i] (inputs rewired), or None if not topological."""
    genes: list[int] = []
    for c, perm in enumerate(perms):
        edges = relabel_edges(darts_edge_sets(a)[c], perm)
        for target in range(2, 6):
            incoming = sorted((s, op) for s, t, op in edges if t == target)
            if any(s >= target for s, _ in incoming):
                return None
            genes += [gene for edge in incoming for gene in edge]
    return get_space("darts").make(genes)


def valid_relabellings(a: Architecture, cell: int) -> list[tuple[int, ...]]:
    identity = (0, 1, 2, 3)
    return [
        perm for perm in itertools.permutations(range(4))
        if darts_relabel(a, (perm, identity) if cell == 0 else (identity, perm)) is not None
    ]


@given(a=darts_archs(), cell=st.integers(0, 1), node=st.integers(0, 3))
def test_darts_swapping_the_two_inputs_of_a_node_keeps_the_key(a, cell, node):
    space = get_space("darts")
    g = list(a.genotype)
    at = 16 * cell + 4 * node
    g[at:at + 4] = g[at + 2:at + 4] + g[at:at + 2]
    swapped = space.make(g)
    assert space.canonical(swapped) == space.canonical(a)
    assert space.edit_distance(a, swapped) == 0
    np.testing.assert_array_equal(space.path_encoding(a), space.path_encoding(swapped))
    np.testing.assert_array_equal(space.adjacency_encoding(a), space.adjacency_encoding(swapped))


@given(a=darts_archs(), cell=st.integers(0, 1), node=st.integers(0, 2))
def test_darts_swapping_independent_nodes_keeps_the_key(a, cell, node):
    """Nodes k and k+1 swap places when k+1 does not read k; later readers are rewired."""
    perm = list(range(4))
    perm[node], perm[node + 1] = node + 1, node
    identity = (0, 1, 2, 3)
    b = darts_relabel(a, (tuple(perm), identity) if cell == 0 else (identity, tuple(perm)))
    assume(b is not None)
    space = get_space("darts")
    assert space.is_valid(b)
    assert space.canonical(a) == space.canonical(b)
    np.testing.assert_array_equal(space.path_encoding(a), space.path_encoding(b))


@settings(max_examples=15)
@given(a=darts_archs(), data=st.data())
def test_darts_key_identifies_exactly_the_isomorphism_class(a, data):
    """Against brute force: a relabelling of `a` and each of its 1-edit neighbours."""
    perms = tuple(data.draw(st.sampled_from(valid_relabellings(a, cell))) for cell in range(2))
    space = get_space("darts")
    b = darts_relabel(a, perms)
    assert b is not None and space.canonical(a) == space.canonical(b)
    for n in space.neighbours(b):
        assert (space.canonical(n) == space.canonical(a)) == darts_isomorphic(n, a)
    rep = space.canonicalize(a)
    assert space.is_valid(rep) and darts_isomorphic(rep, a)
    assert space.canonicalize(rep) == rep
    assert space.from_string(space.canonical(a)) == rep


def test_darts_key_separates_mirrored_cells():
    """Swapping the normal and reduction cells, or the two cell inputs, changes the network."""
    space = get_space("darts")
    a = space.sample(np.random.default_rng(3))
    mirrored = space.make(a.genotype[16:] + a.genotype[:16])
    assert a != mirrored and space.canonical(a) != space.canonical(mirrored)
    g = list(a.genotype)
    g[0:4] = [0, 3, 1, 0]  # node 2 = sep_conv(c_{k-2}) + max_pool(c_{k-1})
    h = list(g)
    h[0:4] = [1, 3, 0, 0]  # node 2 = sep_conv(c_{k-1}) + max_pool(c_{k-2})
    assert space.canonical(space.make(g)) != space.canonical(space.make(h))


# --- DARTS strings and validity --------------------------------------------------------------
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
    "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


def test_darts_official_genotype_round_trips():
    space = get_space("darts")
    a = space.from_string(DARTS_V2)
    assert space.to_string(a) == DARTS_V2
    assert a.genotype[:8] == (0, 3, 1, 3, 0, 3, 1, 3)
    # the DARTS repository writes the concat as range(2, 6)
    assert space.from_string(DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)")) == a
    genotype = space.to_genotype(a)
    assert space.from_genotype(genotype) == a and genotype.normal[-1] == ("dil_conv_3x3", 2)


def test_darts_validity_rules():
    space = get_space("darts")
    a = space.from_string(DARTS_V2)
    assert space.is_valid(a)
    duplicate = list(a.genotype)
    duplicate[2] = duplicate[0]
    too_far = list(a.genotype)
    too_far[4] = 3  # node 3 may read 0..2
    bad_op = list(a.genotype)
    bad_op[1] = 7
    for genes in (duplicate, too_far, bad_op, a.genotype[:-1]):
        assert not space.is_valid(space.make(genes))
        with pytest.raises(InvalidArchitectureError):
            space.neighbours(space.make(genes))
    assert not space.is_valid(Architecture("nb201", a.genotype))


@pytest.mark.parametrize(
    ("name", "text", "offending"),
    [
        ("nb201", "|nor_conv_3x3~0|+|nor_conv_3x3~0|", "3 node groups"),
        ("nb201", "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "conv_9x9"),
        ("nb201", "|none~0|+|none~0|none~2|+|none~0|none~1|none~2|", "none~2"),
        ("nb201", "|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2"),
        ("tnb101_micro", "64-41414-4_00_000", "0..3"),
        ("tnb101_micro", "64-41414-0_00_00", "64-41414-0_00_00"),
        ("darts", "Genotype(normal=[", "never closed"),
        ("darts", "Gene(normal=[])", "expected Genotype"),
        ("darts", DARTS_V2.replace("'dil_conv_3x3', 2", "'dil_conv_7x7', 2"), "dil_conv_7x7"),
        ("darts", DARTS_V2.replace("'dil_conv_3x3', 2", "'dil_conv_3x3', 5"), "('dil_conv_3x3', 5)"),
        (
            "darts",
            DARTS_V2.replace("('sep_conv_3x3', 1), ('skip_connect', 0)", "('sep_conv_3x3', 0), ('skip_connect', 0)"),
            "read input 0",
        ),
        ("darts", DARTS_V2.replace("reduce_concat=[2, 3, 4, 5]", "reduce_concat=[4, 5]"), "reduce_concat"),
        ("darts", DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "reduce_concat"),
        ("darts", DARTS_V2.replace("normal=[", "normal=[('skip_connect', 0), "), "8 (op, input) pairs"),
        ("darts", DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=nodes"), "nodes"),
    ],
)
def test_malformed_strings_name_the_problem(name, text, offending):
    with pytest.raises(InvalidArchitectureError, match="malformed") as error:
        get_space(name).from_string(text)
    assert offending in str(error.value)


# --- encodings -------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "path_size"), [("nb201", 4 + 16 + 64), ("tnb101_micro", 3 + 9 + 27)])
@given(data=st.data())
def test_edge_cell_encodings(name, path_size, data):
    space = get_space(name)
    a = data.draw(archs(name))
    k = len(space.ops)
    graph = space.to_graph(a)
    # input -> ops on 1<-0, 2<-0, 3<-0; 1<-0 -> 2<-1, 3<-1; 2<-0, 2<-1 -> 3<-2; ops into 3 -> output
    expected = {(0, 1), (0, 2), (0, 4), (1, 3), (1, 5), (2, 6), (3, 6), (4, 7), (5, 7), (6, 7)}
    assert graph.x.shape == (8, 2 + k) and set(map(tuple, graph.edge_index.t().tolist())) == expected
    assert torch.equal(graph.x[1:7].argmax(1) - 2, torch.tensor(a.genotype))
    edges = space.codec().encoder_graph(a)  # the G-VAE's view: ops on the edges of the 4-node cell
    assert edges.edge_attr.shape == (6, k) and edges.edge_index.shape == (2, 6)
    assert torch.equal(edges.edge_attr.argmax(1), torch.tensor(a.genotype))
    path = space.path_encoding(a)
    assert path.shape == (path_size,)
    # one slot per op sequence along a route 0->3 with no 'none' op on it
    routes = ((3,), (0, 4), (1, 5), (0, 2, 5))
    sequences = {tuple(a.genotype[e] for e in r) for r in routes}
    assert path.sum() == sum(space.none_op not in seq for seq in sequences)
    adjacency = space.adjacency_encoding(a)
    assert adjacency.shape == (6 * k,) and adjacency.sum() == 6


@given(a=darts_archs())
def test_darts_graph_structure(a):
    space = get_space("darts")
    graph = space.to_graph(a)
    assert graph.x.shape == (30, 12) and graph.edge_index.shape == (2, 40)
    assert torch.equal(graph.x[:, -1], torch.tensor([0.0] * 15 + [1.0] * 15))
    types = graph.x[:, :-1].argmax(1)
    in_degree = torch.bincount(graph.edge_index[1], minlength=30)
    out_degree = torch.bincount(graph.edge_index[0], minlength=30)
    for cell in range(2):
        at = 15 * cell
        assert types[at:at + 2].tolist() == [0, 1]
        op_nodes = slice(at + 2, at + 10)
        ops = a.genotype[16 * cell + 1:16 * (cell + 1):2]
        assert (types[op_nodes] - 4).tolist() == list(ops)
        assert (in_degree[op_nodes] == 1).all() and (out_degree[op_nodes] == 1).all()
        assert (in_degree[at + 10:at + 14] == 2).all() and (types[at + 10:at + 14] == 2).all()
        assert in_degree[at + 14] == 4 and types[at + 14] == 3 and out_degree[at + 14] == 0
    # no edge crosses between the two cells
    assert torch.equal(graph.edge_index[0] // 15, graph.edge_index[1] // 15)


def darts_path_count(a: Architecture, cell: int) -> dict[int, int]:
    """Number of paths from each cell input to any intermediate node, counted recursively."""
    genes = a.genotype[16 * cell:16 * (cell + 1)]
    counts = [[1, 0], [0, 1]]  # paths from (c_{k-2}, c_{k-1}) to each node
    for node in range(4):
        total = [0, 0]
        for slot in (0, 2):
            source = genes[4 * node + slot]
            total = [t + c for t, c in zip(total, counts[source])]
        counts.append(total)
    return {inp: sum(c[inp] for c in counts[2:]) for inp in (0, 1)}


@given(a=darts_archs())
def test_darts_path_and_adjacency_encodings(a):
    space = get_space("darts")
    full = DARTSSpace(max_path_length=4).path_encoding(a)
    truncated = space.path_encoding(a)
    assert full.shape == (4 * 2800,) and truncated.shape == (4 * 400,)
    for block in range(4):  # (normal, reduce) x (c_{k-2}, c_{k-1})
        f, t = full[2800 * block:2800 * (block + 1)], truncated[400 * block:400 * (block + 1)]
        np.testing.assert_array_equal(t[:399], f[:399])
        assert t[399] == f[399:].any()
        paths = darts_path_count(a, block // 2)[block % 2]
        assert 1 <= f.sum() <= paths  # paths with equal op sequences share a slot
    adjacency = space.adjacency_encoding(a)
    assert adjacency.shape == (224,)
    assert adjacency[:14].sum() == adjacency[112:126].sum() == 8
    assert adjacency[14:112].sum() == adjacency[126:].sum() == 8


def test_darts_path_encoding_of_a_chain():
    """c_{k-2} -> n2 -> n3 -> n4 -> n5 by sep_conv_3x3 has one path of each length 1..4."""
    space = DARTSSpace(max_path_length=4)
    sep = 3
    chain_cell = [0, sep, 1, 0, 2, sep, 1, 0, 3, sep, 1, 0, 4, sep, 1, 0]
    a = space.make(chain_cell * 2)
    block = space.path_encoding(a)[:2800]
    slots = [sep, 7 + sep * 7 + sep, 56 + (sep * 7 + sep) * 7 + sep, 399 + ((sep * 7 + sep) * 7 + sep) * 7 + sep]
    assert sorted(np.flatnonzero(block).tolist()) == slots
    with pytest.raises(ValueError, match="max_path_length"):
        DARTSSpace(max_path_length=5)


@pytest.mark.parametrize("name", SPACES)
def test_graph_batches_carry_the_path_encoding_where_the_space_has_one(name):
    space = get_space(name)
    rng = np.random.default_rng(1)
    batch = to_batch(space, [space.sample(rng) for _ in range(4)], y=[0.1, 0.2, 0.3, 0.4])
    assert batch.num_graphs == 4
    if name == "layerwise_test":
        assert not space.supports("path_encoding") and "path" not in batch
    else:
        assert batch.path.shape == (4, space.path_encoding(space.sample(rng)).shape[0])
    assert batch.y.shape == (4,)


def test_darts_sampling_covers_every_valid_choice():
    space = get_space("darts")
    rng = np.random.default_rng(0)
    samples = [space.sample(rng) for _ in range(2000)]
    last_node_inputs = {(a.genotype[12], a.genotype[14]) for a in samples}
    assert last_node_inputs == {(i, j) for i in range(5) for j in range(5) if i != j}
    assert {a.genotype[1] for a in samples} == set(range(7))
    assert space.choices() == [2, 7, 2, 7, 3, 7, 3, 7, 4, 7, 4, 7, 5, 7, 5, 7] * 2


@pytest.mark.parametrize(
    ("name", "other"),
    [("nb201", "tnb101_micro"), ("tnb101_micro", "nb201"), ("darts", "nb201"), ("layerwise_test", "nb201")],
)
def test_foreign_architectures_are_refused(name, other):
    space = get_space(name)
    a = space.sample(np.random.default_rng(0))
    foreign = get_space(other).sample(np.random.default_rng(0))
    assert not space.is_valid(foreign)
    for operation in (space.edit_distance, lambda x, y: space.crossover(x, y, np.random.default_rng(0))):
        with pytest.raises(InvalidArchitectureError, match="not a"):
            operation(a, foreign)


# --- the layer-wise space ----------------------------------------------------------------------
@given(a=layerwise_archs())
def test_layerwise_string_graph_and_encoding(a):
    names = [LAYERWISE.position_choices[p][g] for p, g in enumerate(a.genotype)]
    assert LAYERWISE.to_string(a) == "-".join(names) == LAYERWISE.canonical(a) == LAYERWISE.key(a)
    graph = LAYERWISE.to_graph(a)
    assert graph.x.shape == (7, 2 + 13)
    assert graph.edge_index.tolist() == [[0, 1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]
    offsets = [2, 5, 7, 11, 12]  # each (position, choice) pair is its own node type
    assert graph.x.argmax(1).tolist() == [0, *(o + g for o, g in zip(offsets, a.genotype)), 1]
    adjacency = LAYERWISE.adjacency_encoding(a)
    assert adjacency.shape == (13,) and adjacency.sum() == 5
    assert [int(adjacency[o - 2 + g]) for o, g in zip(offsets, a.genotype)] == [1] * 5


def test_layerwise_enumerates_when_small_and_has_no_path_encoding():
    everything = list(LAYERWISE.enumerate())
    assert len(everything) == len(set(everything)) == 3 * 2 * 4 * 1 * 3
    assert not LAYERWISE.supports("path_encoding") and not LAYERWISE.supports("network")
    with pytest.raises(CapabilityError, match="the layerwise_test search space has no path encoding"):
        LAYERWISE.path_encoding(everything[0])
    with pytest.raises(CapabilityError, match="no network builder .*; live training needs it: set its `block`"):
        LAYERWISE.require("network", by="live training")
    huge = get_space({"class_path": "lightning_nas.spaces.LayerwiseSpace",
                      "init_args": {"name": "layerwise_huge", "positions": 30, "choices": ["a", "b", "c"]}})
    assert not huge.supports("enumerate")
    with pytest.raises(CapabilityError, match="too many to enumerate"):
        next(huge.enumerate())


@pytest.mark.parametrize(
    ("text", "offending"),
    [("identity-k3-mb6_k7-w8", "expected 5 choices"), ("identity-k7-mb6_k7-w8-a", "position 1: unknown choice 'k7'"),
     ("identity-k3-mb6_k7-w8-a-b", "got 6")],
)
def test_layerwise_malformed_strings_name_the_problem(text, offending):
    with pytest.raises(InvalidArchitectureError, match="malformed layerwise_test") as error:
        LAYERWISE.from_string(text)
    assert offending in str(error.value)


@pytest.mark.parametrize(
    ("init_args", "message"),
    [
        ({"name": "x", "choices": ["a", "b"]}, "set positions"),
        ({"name": "x", "choices": [["a"], ["b"]], "positions": 3}, "2 lists of choices but positions: 3"),
        ({"name": "x", "choices": [["a", "a-b"]]}, "without '-'"),
        ({"name": "x", "choices": [["a", "a"]]}, "lists a choice twice"),
        ({"name": "x", "choices": [[]]}, "has no choices"),
        ({"name": "", "choices": ["a"], "positions": 1}, "needs a name"),
        ({"name": "x", "choices": ["a"], "positions": 2, "widths": [8]}, "widths of the x space has 1 entries for 2"),
        ({"name": "x", "choices": ["a"], "positions": 1, "block": "no_such_module.block"}, "no module named"),
        ({"name": "x", "choices": ["a"], "positions": 1, "block": "math.pi"}, "is not callable"),
    ],
)
def test_layerwise_configuration_errors_say_what_to_fix(init_args, message):
    from lightning_nas.errors import ConfigError
    from lightning_nas.spaces import LayerwiseSpace

    with pytest.raises(ConfigError, match=message):
        LayerwiseSpace(**init_args)


def test_layerwise_codec_round_trips_and_repairs():
    from lightning_nas.spaces.codec import REPAIRED, VALID, DecoderOutput

    codec = LAYERWISE.codec()
    archs = list(LAYERWISE.enumerate())[::7]
    batch = codec.batch(archs)
    nodes = torch.nn.functional.one_hot(batch.node_target, codec.num_node_types).float() * 10
    edges = (batch.edge_target * 2 - 1) * 10
    exact = codec.decode(DecoderOutput(nodes, edges, torch.zeros(len(archs), len(codec.slots), 0)))
    assert [(d.arch, d.status) for d in exact] == [(a, VALID) for a in archs]
    torch.manual_seed(0)
    noisy = codec.decode(DecoderOutput(torch.randn(20, codec.num_nodes, codec.num_node_types),
                                       torch.randn(20, len(codec.slots)), torch.zeros(20, len(codec.slots), 0)))
    assert all(d.status == REPAIRED and LAYERWISE.is_valid(d.arch) for d in noisy)
