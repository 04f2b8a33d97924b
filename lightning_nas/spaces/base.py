"""The search-space protocol every space implements, the immutable `Architecture`, and the registry.

A space describes an architecture by a `genotype`: a tuple of small ints (hashable, picklable,
storable in a `weights_only` checkpoint as a list). Every other view (string, graph, encodings,
the benchmark key, the network) is derived by the space. All randomness comes from an explicit
`numpy.random.Generator`.

Beyond the required methods, a space may offer optional capabilities (`CAPABILITIES`): it offers
one by defining the method, and `supports` / `require` let a caller ask before it starts. Spaces
are found by `get_space`: a registered name, a class path, a `{class_path, init_args}` spec, or an
installed package's entry point (group `lightning_nas.spaces`). See docs/search_spaces.md.
"""
from __future__ import annotations

import inspect
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

import numpy as np

from lightning_nas.errors import CapabilityError, ConfigError
from lightning_nas.spaces.loading import check_spec, entry_point, entry_point_names, import_object, read_spec

if TYPE_CHECKING:
    from torch import nn

    from lightning_nas.spaces.codec import GraphCodec


class InvalidArchitectureError(ConfigError):
    """A string or genotype that does not describe an architecture of the space."""


def wrong_space_error(space: str, a: "Architecture") -> InvalidArchitectureError:
    shown = str(a) if a.space in _REGISTRY else repr(a)
    return InvalidArchitectureError(
        f"{shown} is not a {space} architecture but a {a.space} one: a predictor checkpoint or run directory "
        f"made for {a.space} was given to a {space} search? use one made for {space}"
    )


def parse_error(space: str, s: str, why: str) -> InvalidArchitectureError:
    return InvalidArchitectureError(f"malformed {space} architecture string {s!r}: {why}")


@dataclass(frozen=True)
class Architecture:
    space: str
    genotype: tuple[int, ...]

    def __str__(self) -> str:
        return get_space(self.space).to_string(self)


#: optional capabilities (method names) and what each one is, for messages
CAPABILITIES: dict[str, str] = {
    "network": "network builder",
    "codec": "G-VAE graph codec",
    "path_encoding": "path encoding",
    "enumerate": "enumeration of its architectures",
}


class SearchSpace(ABC):
    """One search space. Subclasses are stateless apart from caches and their constructor's options."""

    name: str

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # --- construction and identity -------------------------------------------------------
    def make(self, genotype: Sequence[int]) -> Architecture:
        return Architecture(self.name, tuple(int(g) for g in genotype))

    @abstractmethod
    def is_valid(self, a: Architecture) -> bool: ...

    def check(self, a: Architecture) -> None:
        """Raise `InvalidArchitectureError` unless `a` is a valid architecture of this space."""
        if a.space != self.name:
            raise wrong_space_error(self.name, a)
        if not self.is_valid(a):
            raise InvalidArchitectureError(f"not a valid {self.name} architecture: {a!r}")

    @abstractmethod
    def canonical(self, a: Architecture) -> str:
        """Key shared by every architecture isomorphic to `a` (computes the same function)."""

    def representative(self, a: Architecture) -> Architecture:
        """The one member of `a`'s `canonical` class that stands for all of it, so that equivalent
        cells can be featurised alike. Spaces that cannot enumerate their classes return `a`."""
        return a

    def key(self, a: Architecture) -> str:
        """The benchmark's own key for `a` (NB201: the string; NB101: the module hash)."""
        return self.to_string(a)

    def from_key(self, key: str) -> Architecture:
        """The architecture of a benchmark key (the inverse of `key`)."""
        return self.from_string(key)

    @abstractmethod
    def to_string(self, a: Architecture) -> str: ...

    @abstractmethod
    def from_string(self, s: str) -> Architecture:
        """Parse the official string form; raise `InvalidArchitectureError` naming the problem."""

    def init_args(self) -> dict[str, Any] | None:
        """The constructor arguments that rebuild this space in another process (`space_reference`),
        for spaces configured by arguments; None when the class needs none."""
        return None

    # --- variation -----------------------------------------------------------------------
    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Architecture: ...

    @abstractmethod
    def neighbours(self, a: Architecture) -> list[Architecture]:
        """Every valid architecture at edit distance exactly 1, in a fixed order."""

    def mutate(self, a: Architecture, rng: np.random.Generator) -> Architecture:
        """A uniformly chosen 1-edit neighbour."""
        options = self.neighbours(a)
        return options[int(rng.integers(len(options)))]

    @abstractmethod
    def crossover(self, a: Architecture, b: Architecture, rng: np.random.Generator) -> Architecture: ...

    @abstractmethod
    def edit_distance(self, a: Architecture, b: Architecture) -> int: ...

    # --- flat decision view (controllers, diffusion, one-hot encodings) ------------------
    @abstractmethod
    def choices(self) -> list[int]:
        """Number of options for each position of the genotype."""

    # --- encodings -----------------------------------------------------------------------
    @abstractmethod
    def to_graph(self, a: Architecture):
        """A torch_geometric `Data`: `x` [nodes, F] one-hot node types (ops on nodes, F fixed for
        the space), `edge_index` [2, edges] from source to target."""

    @abstractmethod
    def adjacency_encoding(self, a: Architecture) -> np.ndarray:
        """Flat float vector of fixed length: the wiring (if it varies) followed by one-hot ops."""

    # --- optional capabilities -----------------------------------------------------------
    def supports(self, capability: str) -> bool:
        """Whether the space offers `capability` (a key of `CAPABILITIES`). A space offers one by
        defining its method; a space whose instances differ (a layer-wise space without a block
        factory has no network) refines this."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown capability {capability!r}; known: {', '.join(CAPABILITIES)}")
        return getattr(type(self), capability) is not getattr(SearchSpace, capability)

    def require(self, *capabilities: str, by: str) -> None:
        """Refuse up front, in one line, when `by` (a method, an oracle) needs a capability the
        space does not offer."""
        for capability in capabilities:
            if not self.supports(capability):
                raise self.missing(capability, by)

    def missing(self, capability: str, by: str | None = None) -> CapabilityError:
        needed = f"; {by} needs it" if by else ""
        return CapabilityError(
            f"the {self.name} search space has no {CAPABILITIES[capability]} (`{capability}`){needed}: "
            f"use a method that does without it, or give the space a `{capability}` method "
            "(docs/search_spaces.md)"
        )

    def check_network_options(self, options: Mapping[str, Any] | None, by: str) -> None:
        """Refuse up front, in one line, `network` options (a config's `network:`) that the space's
        builder does not take; a builder with `**options` takes anything."""
        if not options:
            return
        parameters = list(inspect.signature(self.network).parameters.values())[3:]  # after a, num_classes, in_channels
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return
        known = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        unknown = [k for k in options if k not in known]
        if unknown:
            raise ConfigError(
                f"{by}: the {self.name} network builder takes no option {', '.join(map(repr, unknown))} "
                f"(`network:`); it takes: {', '.join(known) or 'none'}"
            )

    def network(self, a: Architecture, num_classes: int = 10, in_channels: int = 3, **options) -> nn.Module:
        """The trainable network of `a`: an `nn.Module` with `forward(x)` -> logits and
        `features(x)` -> the map before global pooling; `options` are the builder's (width, depth)."""
        raise self.missing("network")

    def codec(self) -> GraphCodec:
        """The G-VAE's view of the space (CR-LSO): encoder graphs, decoder targets, decoding."""
        raise self.missing("codec")

    def path_encoding(self, a: Architecture) -> np.ndarray:
        """Binary vector, one slot per possible input->output path of ops (DCL-ENAS hard encoder)."""
        raise self.missing("path_encoding")

    def enumerate(self) -> Iterator[Architecture]:
        """Every architecture of the space, once each, in a fixed order."""
        raise self.missing("enumerate")


# --- the registry ------------------------------------------------------------------------
ENTRY_POINT_GROUP = "lightning_nas.spaces"
#: what names a space: a registered name, an entry point, a class path, a spec (mapping, JSON
#: text or a .yaml/.json file holding `class_path` and `init_args`), or the space itself
SpaceRef = Union[str, Mapping[str, Any], SearchSpace]

_REGISTRY: dict[str, SearchSpace] = {}
_ALIASES: dict[str, str] = {}  # class paths, specs and entry-point names -> registered name
_REFERENCES: dict[str, str] = {}  # registered name -> what rebuilds the space in another process


def register(space: SearchSpace, reference: str | None = None) -> SearchSpace:
    """Make `space` known by its name and return the registered space: registering the same
    definition again (same class and `init_args`) returns the first one."""
    if not isinstance(space, SearchSpace):
        raise ConfigError(f"{space!r} is not a search space (a lightning_nas.spaces.SearchSpace)")
    reference = reference or _default_reference(space)
    existing = _REGISTRY.get(space.name)
    if existing is None:
        _REGISTRY[space.name] = space
        _REFERENCES[space.name] = reference
    elif existing is not space and not (type(existing) is type(space) and existing.init_args() == space.init_args()):
        how = "with other init_args" if type(existing) is type(space) else f"besides the registered {existing!r}"
        raise ConfigError(
            f"two different search spaces are named {space.name!r} (a {type(space).__name__} {how}): "
            "give one of them another name"
        )
    _ALIASES[reference] = space.name
    return _REGISTRY[space.name]


def _default_reference(space: SearchSpace) -> str:
    cls = type(space)
    class_path = f"{cls.__module__}.{cls.__qualname__}"
    args = space.init_args()
    if args is not None:
        return json.dumps({"class_path": class_path, "init_args": args}, sort_keys=True)
    return space.name if cls.__module__.startswith("lightning_nas.") else class_path


def space_reference(space: SpaceRef) -> str:
    """What `get_space` rebuilds `space` from in another process: the name of a built-in or
    entry-point space, else its class path or its spec as JSON text (what archives store)."""
    return _REFERENCES[get_space(space).name]


def get_space(ref: SpaceRef) -> SearchSpace:
    """The space `ref` names (see `SpaceRef`), importing and registering it on first use."""
    if isinstance(ref, SearchSpace):  # registered unless its name is taken (a variant of a built-in)
        return ref if ref.name in _REGISTRY else register(ref)
    if isinstance(ref, Mapping):
        spec = check_spec(ref, "the search space spec")
        return _from_spec(spec, json.dumps(spec, sort_keys=True))
    if not isinstance(ref, str):
        raise ConfigError(f"a search space is named by a string or a {{class_path, init_args}} mapping, not {ref!r}")
    key = ref.strip()
    name = _ALIASES.get(key, key)
    if name in _REGISTRY:
        return _REGISTRY[name]
    found = entry_point(ENTRY_POINT_GROUP, key)
    if found is not None:
        space = register(_instance(found, f"entry point {key!r} of {ENTRY_POINT_GROUP}"), reference=key)
    elif (spec := read_spec(key)) is not None:
        space = _from_spec(spec, json.dumps(spec, sort_keys=True))
    elif "." in key or ":" in key:
        space = _instance(import_object(key, "search space"), key)
        space = register(space, reference=key if space.init_args() is None else None)
    else:
        plugins = entry_point_names(ENTRY_POINT_GROUP)
        raise ConfigError(
            f"unknown search space {ref!r}; known: {', '.join(sorted({*_REGISTRY, *plugins}))}; for a space of "
            "your own give its class path (package.module.Class) or a {class_path, init_args} spec, or install "
            f"a package that declares it in the entry-point group {ENTRY_POINT_GROUP} (docs/search_spaces.md)"
        )
    _ALIASES[key] = space.name
    return space


def _from_spec(spec: dict[str, Any], reference: str) -> SearchSpace:
    name = _ALIASES.get(reference)
    if name in _REGISTRY:
        return _REGISTRY[name]
    cls = import_object(spec["class_path"], "search space class")
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ConfigError(f"{spec['class_path']} is not a SearchSpace subclass")
    try:
        space = cls(**spec["init_args"])
    except TypeError as e:
        raise ConfigError(f"{spec['class_path']} does not take these init_args: {e}") from None
    space = register(space, reference=reference if space.init_args() is None else None)
    _ALIASES[reference] = space.name
    return space


def _instance(obj: Any, where: str) -> SearchSpace:
    """The space a class path or an entry point names: an instance, or a class built without arguments."""
    if isinstance(obj, SearchSpace):
        return obj
    if isinstance(obj, type) and issubclass(obj, SearchSpace):
        try:
            return obj()
        except TypeError as e:
            raise ConfigError(
                f"{where} needs constructor arguments ({e}): name it by a spec "
                "{class_path: ..., init_args: {...}}"
            ) from None
    what = f"the class {obj.__name__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
    raise ConfigError(f"{where} names {what}, not a SearchSpace subclass or instance")
