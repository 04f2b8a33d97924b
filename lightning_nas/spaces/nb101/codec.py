"""The G-VAE codec of NAS-Bench-101."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch_geometric.data import Batch, Data

from lightning_nas.spaces.base import Architecture, SearchSpace
from lightning_nas.spaces.codec import IGNORE, INVALID, REPAIRED, VALID, Decoded, DecoderOutput, GraphCodec
from lightning_nas.spaces.nb101.cells import EDGES, NUM_VERTICES, OPS, on_path_vertices


class NB101Codec(GraphCodec):
    """NB101: the 7-vertex frame of the genotype, ops on nodes (types: input, the 3 ops, output),
    21 upper-triangular edge slots, no edge types (the paper's "no edge types for NB101").

    Decoding keeps vertex 0 as input and vertex 6 as output and takes the best op for vertices
    1..5 (a vertex decoded as input / output is repaired). A graph with no input->output path gets
    its most probable missing edges added, one with more than 9 edges (after pruning) loses its
    least probable ones; what is still invalid after that is rejected."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.num_nodes = NUM_VERTICES
        self.num_node_types = len(OPS) + 2  # input, ops, output
        self.num_edge_types = 0
        self.slots = EDGES
        self.node_features = self.num_node_types
        self.edge_features = 0
        self._output_type = self.num_node_types - 1

    def _node_types(self, a: Architecture) -> list[int]:
        ops = a.genotype[len(self.slots) :]
        return [0, *(1 + op for op in ops), self._output_type]

    def encoder_graph(self, a: Architecture) -> Data:
        bits = a.genotype[: len(self.slots)]
        edges = [slot for slot, bit in zip(self.slots, bits) if bit]
        edge_index = torch.tensor(edges, dtype=torch.long).reshape(-1, 2).t().contiguous()
        x = F.one_hot(torch.tensor(self._node_types(a)), self.num_node_types).float()
        return Data(x=x, edge_index=edge_index)

    def targets(self, a: Architecture) -> tuple[list[int], list[int], list[int]]:
        return self._node_types(a), list(a.genotype[: len(self.slots)]), [IGNORE] * len(self.slots)

    def batch(self, archs: Sequence[Architecture]) -> Batch:
        """The `Batch.from_data_list` of the archs' `graph`s, tensor for tensor (slices included),
        built from the genotype matrix at once: a G-VAE fit featurises its 30k-cell pool several
        times, and one `Data` per cell cost more than the encoder itself."""
        if not archs:
            return super().batch(archs)
        genotypes = torch.tensor([a.genotype for a in archs], dtype=torch.long)
        num, n, s = len(archs), self.num_nodes, len(self.slots)
        bits, ops = genotypes[:, :s], genotypes[:, s:]
        types = torch.cat([torch.zeros(num, 1, dtype=torch.long), 1 + ops,
                           torch.full((num, 1), self._output_type, dtype=torch.long)], dim=1)
        graph, slot = bits.nonzero(as_tuple=True)  # per graph, edges in slot order (`encoder_graph`)
        first = torch.arange(0, num * n + 1, n)  # node offsets, and the node slices
        per_graph = torch.arange(num + 1)
        out = Batch(_base_cls=Data)
        out.x = F.one_hot(types.flatten(), self.num_node_types).float()
        out.edge_index = (torch.tensor(self.slots, dtype=torch.long)[slot] + first[graph, None]).t().contiguous()
        out.node_target, out.edge_target = types, bits.float()
        out.type_target = torch.full((num, s), IGNORE, dtype=torch.long)
        out.batch = torch.arange(num).repeat_interleave(n)
        out.ptr = first
        out._num_graphs = num
        zeros = torch.zeros(num, dtype=torch.long)
        edges = torch.cat([torch.zeros(1, dtype=torch.long), bits.sum(1).cumsum(0)])
        out._slice_dict = {"x": first, "edge_index": edges, "node_target": per_graph, "edge_target": per_graph,
                           "type_target": per_graph}
        out._inc_dict = {"x": zeros, "edge_index": first[:-1], "node_target": zeros, "edge_target": zeros,
                         "type_target": zeros}
        return out

    def decode(self, out: DecoderOutput) -> list[Decoded]:
        types = out.node_logits.argmax(-1).cpu()
        ops = out.node_logits[:, 1:-1, 1:-1].argmax(-1).cpu()  # best op of vertices 1..5
        probs = torch.sigmoid(out.edge_logits).cpu()
        return [self._decode_one(t, o, p) for t, o, p in zip(types, ops, probs)]

    def _decode_one(self, types: torch.Tensor, ops: torch.Tensor, probs: torch.Tensor) -> Decoded:
        expected_ends = int(types[0]) == 0 and int(types[-1]) == self._output_type
        repaired = not expected_ends or bool(((types[1:-1] == 0) | (types[1:-1] == self._output_type)).any())
        bits = (probs > 0.5).long().tolist()
        op_genes = ops.tolist()
        for _ in range(len(self.slots)):
            arch = self.space.make(bits + op_genes)
            if self.space.is_valid(arch):
                return Decoded(arch, REPAIRED if repaired else VALID)
            repaired = True
            matrix = np.zeros((self.num_nodes, self.num_nodes), dtype=np.int64)
            for (src, dst), bit in zip(self.slots, bits):
                matrix[src, dst] = bit
            kept = on_path_vertices(matrix)
            if kept is None:  # no path: add the most probable missing edge
                absent = [i for i, bit in enumerate(bits) if not bit]
                if not absent:
                    break
                bits[max(absent, key=lambda i: float(probs[i]))] = 1
            else:  # too many edges on the kept vertices: drop the least probable of them
                inside = [i for i, (src, dst) in enumerate(self.slots) if bits[i] and src in kept and dst in kept]
                bits[min(inside, key=lambda i: float(probs[i]))] = 0
        return Decoded(None, INVALID)
