"""The protocol every search method implements. The `SearchLoop` owns budget, RNG, history, checkpoints."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

import numpy as np

from lightning_nas.errors import ConfigError
from lightning_nas.search.surrogate import Surrogate, untrained
from lightning_nas.spaces.base import Architecture, SearchSpace

if TYPE_CHECKING:
    from lightning_nas.search.objectives import Objectives

SAMPLE_TRIES = 1000  # uniform draws per wanted architecture before `sample_unseen` gives up


class Strategy(ABC):
    """ask -> the loop evaluates through its oracle -> tell. No file or benchmark access here."""

    #: the surrogate protocol (`lightning_nas.search.surrogate`) the strategy cannot run without, if any
    surrogate_protocol: type[Surrogate] | None = None
    #: a predictor that gives it (`model:` in the search config), named when setup refuses a surrogate
    surrogate_hint: str = "a trained predictor"
    #: a zero-cost proxy to score with instead of a trained predictor (`ProxySurrogate` arguments);
    #: the search runner builds that surrogate
    proxy_surrogate: dict[str, Any] | None = None
    #: how to give the strategy a warm start, named when setup refuses an untrained predictor
    warm_start_hint: str = ""
    #: under `table_only`, draw random architectures (`sample`, `sample_unseen`) uniformly from the
    #: table's rows instead of sampling the space and rejecting what the table lacks: another
    #: distribution (uniform over the table's cells, not over the space's genotypes), so an option
    #: of the strategies that offer it
    table_draws: bool = False
    _answerable: Callable[[Architecture], bool] | None = None
    _draw: Callable[[np.random.Generator], Architecture | None] | None = None
    _pool: Callable[[], list[Architecture] | None] | None = None
    #: set by `sample_unseen` when the table's architectures gave it nothing left to propose
    pool_exhausted: bool = False

    def restrict(self, answerable: Callable[[Architecture], bool],
                 draw: Callable[[np.random.Generator], Architecture | None] | None = None,
                 pool: Callable[[], list[Architecture] | None] | None = None) -> None:
        """Propose only architectures for which `answerable` holds (the search's `table_only`);
        `draw`: a uniform draw among the answerable ones, `pool`: all of them where they are
        finitely many (a table's), for `sample_unseen` (None where the oracle cannot list them)."""
        self._answerable, self._draw, self._pool = answerable, draw, pool

    def answerable(self, a: Architecture) -> bool:
        """Strategies that rank candidates pick only answerable ones; the loop skips the rest for free."""
        return self._answerable is None or self._answerable(a)

    def setup(self, space: SearchSpace, rng: np.random.Generator, surrogate: Surrogate | None = None) -> None:
        protocol = self.surrogate_protocol
        if protocol is not None and surrogate is None:
            raise ConfigError(
                f"{type(self).__name__} needs a trained predictor: give `model:` and `ckpt_path:`")
        if protocol is not None and not isinstance(surrogate, protocol):
            raise ConfigError(
                f"{type(self).__name__} needs a {protocol.__name__}, which a {type(surrogate).__name__} is not: "
                f"set `model:` to {self.surrogate_hint}"
            )
        if protocol is not None and untrained(surrogate) is not None and self.warm_start_size() < 1:
            raise ConfigError(f"{type(self).__name__} would search with a predictor that was never trained: "
                              f"{untrained(surrogate)}{self.warm_start_hint}")
        self.space, self.rng, self.surrogate = space, rng, surrogate

    def warm_start_size(self) -> int:
        """How many of the first queries are random cells whose labels train an untrained predictor
        before it guides (a warm start, charged to the budget); 0: this strategy cannot train one."""
        return 0
    def use_objectives(self, objectives: Objectives) -> None:
        """Called by the loop, after `setup`, when the search declares several objectives or
        constraints (`lightning_nas.search.objectives`): a strategy with a multi-objective mode
        overrides this; the others refuse."""
        raise ConfigError(
            f"{type(self).__name__} searches one objective without constraints: for `objectives:` or "
            "`constraints:` use a strategy with a multi-objective mode (docs/multi_objective.md), e.g. "
            "lightning_nas.search.mo_baselines.MultiObjectiveRE")

    @abstractmethod
    def ask(self, n: int) -> list[Architecture]:
        """Up to `n` architectures to evaluate next (fewer is fine; at least one)."""

    @abstractmethod
    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors/numbers/strings/lists only, so `torch.load(weights_only=True)` reads it."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def sample(self) -> Architecture:
        """A random architecture: with `table_draws` under `table_only`, a uniform draw of the
        table's rows (every one answerable), else the space's `sample`."""
        drawn = self._draw(self.rng) if self.table_draws and self._draw is not None else None
        return drawn if drawn is not None else self.space.sample(self.rng)

    def sample_unseen(self, n: int, exclude: Collection[str] = (),
                      identity: Callable[[Architecture], str] | None = None,
                      distinct: bool = True) -> list[Architecture]:
        """Up to `n` random architectures (`sample`) that the oracle can answer and whose identity
        (default: the space's key) is not in `exclude`, distinct by identity unless `distinct` is
        False; fewer when `SAMPLE_TRIES` draws per wanted sample find no more. Under `table_only`
        the rest are then drawn from the table's unused architectures: a table that holds a small
        part of its space (a user's 30 cells) is seldom hit by chance."""
        identity = identity or self.space.key
        out: list[Architecture] = []
        taken: set[str] = set()
        for _ in range(SAMPLE_TRIES * n):
            if len(out) == n:
                break
            a = self.sample()
            key = identity(a)
            if key not in exclude and key not in taken and self.answerable(a):
                out.append(a)
                if distinct:
                    taken.add(key)
        if len(out) < n and self._pool is not None:
            pool = self._pool()
            if pool is not None:
                taken |= {identity(a) for a in out}
                left = [a for a in pool if identity(a) not in exclude and identity(a) not in taken]
                self.pool_exhausted = not left
                picks = self.rng.choice(len(left), size=min(n - len(out), len(left)), replace=False)
                out += [left[i] for i in sorted(picks)]
        return out

    # helpers for (de)serialising architectures in state dicts
    def _pack(self, archs: Sequence[Architecture]) -> list[list[int]]:
        return [list(a.genotype) for a in archs]

    def _unpack(self, genotypes: Sequence[Sequence[int]]) -> list[Architecture]:
        return [self.space.make(g) for g in genotypes]
