"""`LayerwiseSpace`: a sequence of positions (layers), each with its own list of choices.

Covers macro spaces such as NAS-Bench-Macro (8 layers, each one of 3 blocks), MobileNet-style
spaces (a block type, kernel and expansion per layer) and hyper-parameter-like choices. Every
combination of choices is an architecture. The string form joins the chosen names in position
order (`"b1-b3-b2"`); it is also the benchmark key and the canonical key (no two architectures
compute the same function as far as the space knows).

Configured by its arguments, so a YAML config (or `lightning-nas convert --space spec.yaml`) can
describe it without Python:

    class_path: lightning_nas.spaces.LayerwiseSpace
    init_args: {name: macro, positions: 8, choices: [identity, mb3_k3, mb6_k5]}

With `block` (the class path of a factory `(position, choice, c_in, c_out, stride) -> nn.Module`)
the space also builds networks: stem, one block per position, global pool, linear.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
from torch import nn

from lightning_nas.errors import CapabilityError, ConfigError
from lightning_nas.spaces.base import Architecture, parse_error
from lightning_nas.spaces.choices import ChoiceSpace
from lightning_nas.spaces.layerwise.network import layerwise_network
from lightning_nas.spaces.loading import import_object

BlockFactory = Callable[[int, str, int, int, int], nn.Module]


class LayerwiseSpace(ChoiceSpace):
    def __init__(
        self,
        name: str,
        choices: Sequence[str] | Sequence[Sequence[str]],
        positions: int | None = None,
        separator: str = "-",
        block: str | None = None,
        stem_channels: int = 16,
        widths: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
    ):
        """`choices`: one list of names for every position (then `positions` says how many), or
        one list per position. `block`: class path of the block factory (no network without it);
        `stem_channels`, `widths` (output channels per position, default all `stem_channels`) and
        `strides` (default all 1) shape the network and can be overridden per call of `network`."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ConfigError(f"a layer-wise space needs a name (a string without spaces around it), got {name!r}")
        self.name = name
        self.separator = separator
        self.position_choices = _per_position(name, choices, positions)
        for p, names in enumerate(self.position_choices):
            _check_names(name, p, names, separator)
        self.block = block
        self._factory: BlockFactory | None = None
        if block is not None:
            factory = import_object(block, f"block factory of the {name} space")
            if not callable(factory):
                raise ConfigError(f"block factory {block!r} of the {name} space is not callable")
            self._factory = factory
        self.stem_channels = stem_channels
        self.widths = self._per_layer("widths", widths)
        self.strides = self._per_layer("strides", strides)

    def _per_layer(self, what: str, values: Sequence[int] | None) -> list[int] | None:
        if values is not None and len(values) != len(self.position_choices):
            raise ConfigError(
                f"{what} of the {self.name} space has {len(values)} entries for {len(self.position_choices)} positions"
            )
        return None if values is None else [int(v) for v in values]

    def init_args(self) -> dict[str, Any]:
        first = self.position_choices[0]
        same = all(names == first for names in self.position_choices)
        return {
            "name": self.name, "separator": self.separator, "block": self.block,
            "choices": list(first) if same else [list(names) for names in self.position_choices],
            "positions": len(self.position_choices) if same else None,
            "stem_channels": self.stem_channels, "widths": self.widths, "strides": self.strides,
        }

    def choices(self) -> list[int]:
        return [len(names) for names in self.position_choices]

    # --- identity and strings ------------------------------------------------------------
    def canonical(self, a: Architecture) -> str:
        return self.to_string(a)

    def to_string(self, a: Architecture) -> str:
        self.check(a)
        return self.separator.join(names[g] for names, g in zip(self.position_choices, a.genotype))

    def from_string(self, s: str) -> Architecture:
        if not isinstance(s, str):
            raise parse_error(self.name, repr(s), "expected a string")
        tokens = s.strip().split(self.separator)
        if len(tokens) != len(self.position_choices):
            expected = f"expected {len(self.position_choices)} choices joined by {self.separator!r}"
            raise parse_error(self.name, s, f"{expected}, got {len(tokens)}")
        genotype = []
        for p, (token, names) in enumerate(zip(tokens, self.position_choices)):
            if token not in names:
                raise parse_error(self.name, s, f"position {p}: unknown choice {token!r} (choices: {', '.join(names)})")
            genotype.append(names.index(token))
        return self.make(genotype)

    # --- encodings and capabilities ------------------------------------------------------
    def to_graph(self, a: Architecture):
        """A chain: input, one node per position, output. Node types one-hot over [input, output,
        then every (position, choice) pair in order], so one name at two positions is two types."""
        from torch_geometric.data import Data

        self.check(a)
        x = torch.nn.functional.one_hot(torch.tensor(self.node_types(a)), 2 + sum(self.choices())).float()
        chain = torch.arange(len(self.position_choices) + 1)
        return Data(x=x, edge_index=torch.stack([chain, chain + 1]))

    def node_types(self, a: Architecture) -> list[int]:
        """The `to_graph` node types of `a`: 0 input, 1 output, 2 + offset of the position + choice."""
        offsets, total = [], 2
        for count in self.choices():
            offsets.append(total)
            total += count
        return [0, *(o + g for o, g in zip(offsets, a.genotype)), 1]

    def supports(self, capability: str) -> bool:
        if capability == "network":
            return self._factory is not None
        return super().supports(capability)

    def missing(self, capability: str, by: str | None = None) -> CapabilityError:
        if capability != "network":
            return super().missing(capability, by)
        needed = f"; {by} needs it" if by else ""
        return CapabilityError(
            f"the {self.name} search space has no network builder (`network`){needed}: set its `block` to the "
            "class path of a block factory (position, choice, c_in, c_out, stride) -> nn.Module"
        )

    def network(
        self,
        a: Architecture,
        num_classes: int = 10,
        in_channels: int = 3,
        stem_channels: int | None = None,
        widths: Sequence[int] | None = None,
        strides: Sequence[int] | None = None,
    ) -> nn.Module:
        """Stem (conv3x3-BN-ReLU), one block per position from the block factory, global pool, linear."""
        if self._factory is None:
            raise self.missing("network")
        self.check(a)
        stem = self.stem_channels if stem_channels is None else stem_channels
        widths = self._per_layer("widths", widths) or self.widths or [stem] * len(self.position_choices)
        strides = self._per_layer("strides", strides) or self.strides or [1] * len(self.position_choices)
        chosen = [names[g] for names, g in zip(self.position_choices, a.genotype)]
        return layerwise_network(chosen, self._factory, self.block, num_classes, in_channels, stem, widths, strides)

    def codec(self):
        from lightning_nas.spaces.layerwise.codec import LayerwiseCodec

        return LayerwiseCodec(self)


def _per_position(name: str, choices: Any, positions: int | None) -> list[tuple[str, ...]]:
    if not isinstance(choices, (list, tuple)) or not choices:
        raise ConfigError(f"choices of the {name} space must be a non-empty list, got {choices!r}")
    if all(isinstance(c, str) for c in choices):
        if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1:
            raise ConfigError(
                f"the {name} space gives one list of choices for every position: set positions to how many (>= 1)"
            )
        return [tuple(choices)] * positions
    if not all(isinstance(c, (list, tuple)) for c in choices):
        raise ConfigError(f"choices of the {name} space: a list of names, or one list of names per position")
    if positions is not None and positions != len(choices):
        raise ConfigError(f"the {name} space has {len(choices)} lists of choices but positions: {positions}")
    return [tuple(c) for c in choices]


def _check_names(space: str, position: int, names: Sequence[Any], separator: str) -> None:
    where = f"position {position} of the {space} space"
    if not names:
        raise ConfigError(f"{where} has no choices")
    for n in names:
        if not isinstance(n, str) or not n or separator in n or n != n.strip():
            raise ConfigError(
                f"{where}: choice {n!r} must be a non-empty name without {separator!r} or spaces around it"
            )
    if len(set(names)) != len(names):
        raise ConfigError(f"{where} lists a choice twice: {list(names)}")
