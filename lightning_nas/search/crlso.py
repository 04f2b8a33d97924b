"""CR-LSO search (Rao et al., Alg. 2 and 3): gradient steps in the frozen G-VAE latent space.

Every round: the `top_k` best labelled architectures are seeds; from each seed's latent point z0
one step along the gradient d of the predicted accuracy (up the concave `-ICNN`, i.e. down the
ICNN itself) gives z' = z0 + eta * d + sigma * eps, which is decoded (Alg. 2); eta and sigma are
measured in the spread of the G-VAE's latent cloud (see `CRLSO.__init__`). While the decoded
architecture is already labelled (or already proposed this round), or under `table_only` one the
oracle cannot answer (a table that samples its space: NB101's 30k cells), eta grows by
`step_increment` up to `max_step_size`; once eta is at its maximum, the noise sigma grows by
`noise_increment` instead (no upper limit). The new architectures go to the oracle, and `tell`
fine-tunes the ICNN on every label so far (Alg. 3).

Two fine-tune options serve Sec. III-E2's aim, a predictor accurate "in the performance highland":
`finetune_target="rank"` regresses the labels' normal scores (the standard-normal quantile of each
label's rank) instead of the z-scored labels, so the few collapsed cells (10% accuracy) no longer
dominate the squared error and the best cells are spread apart; `finetune_from="fit"` starts every
round's fine-tune from the fitted ICNN, which learned the whole space from the pseudo-labels,
instead of from the last round's head, which drifts toward the region searched so far.

A labelled architecture's latent point (its seed point, and its input to the fine-tune) is its
encoding, or with `seed_latent="proposed"` the point it was decoded from: then the next step from
it continues where the last one ended ("(8) can be performed multiple times by iteratively
assigning a new z", Sec. III-E1; the authors' code keeps that point too).

The first asks return the fit's labelled architectures (`warm_start`), so the search pays for the
labels its predictor was trained on, as the paper's query counts do. A model that was never fitted
(no checkpoint: live training, the user's own data) is fitted inside the run instead: the first
`initial_size` queries are random cells, and the whole model (Alg. 1) is fitted on their labels for
`fit_epochs` before the first latent step.

Every decode is counted by verdict (valid / repaired / invalid) and outcome (new, already
known, or new but unanswerable); `stats()` reports the counts and the loop writes them into
`results.json`.

Direction: the paper's intent is to move toward higher predicted accuracy. The authors' released
code minimises `1 - icnn(z)` with SGD, which *raises* the ICNN output, i.e. lowers the predicted
accuracy `1 - icnn(z)`; here the step is taken on the predicted accuracy itself and
`tests/test_crlso.py` checks that it rises.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from lightning_nas.errors import ConfigError
from lightning_nas.search.mo_modes import CRLSOMode
from lightning_nas.search.strategy import Strategy
from lightning_nas.search.surrogate import LatentSurrogate
from lightning_nas.spaces.base import Architecture
from lightning_nas.spaces.codec import INVALID, REPAIRED, VALID

DECODE_CHUNK = 16  # attempts decoded per batch

SEED_LATENTS = ("encoded", "proposed")  # where a labelled architecture's latent point comes from
FINETUNE_TARGETS = ("zscore", "rank")  # what the ICNN regresses: z-scored labels or their normal scores
FINETUNE_STARTS = ("last", "fit")  # each fine-tune continues the last round's head or restarts from the fit's
#: an unfitted model's initial_size (the fit's labelled set of configs/fits/*/crlso.yaml), fit_epochs
#: (their trainer.max_epochs) and fit_pool (CR-LSO appendix A: 50,000 samples where the space is larger)
UNFITTED_DEFAULTS = (50, 4, 50_000)

COUNTERS = (
    "warm_start_queries",  # the fit's labelled architectures, re-queried so the budget counts them
    "random_initial",  # random samples asked before the model is fitted, or before any label exists
    "proposed",  # new architectures from latent-space steps
    "decodes",  # every decode attempt
    "decoded_valid",  # ... decoded into a valid architecture as is
    "decoded_repaired",  # ... needed a repair to become valid
    "decoded_invalid",  # ... could not be repaired: rejected
    "decoded_known",  # ... decoded into an already labelled (or already proposed) architecture
    "decoded_unanswerable",  # ... into a new architecture the oracle cannot answer (table_only)
    "step_increases",  # eta grown
    "noise_increases",  # sigma grown (eta at its maximum)
    "fallback_mutations",  # Alg. 2 gave up after `max_attempts`: a mutation of the seed instead
    "finetunes",
)


class CRLSO(Strategy):
    surrogate_protocol = LatentSurrogate
    surrogate_hint = ("a CR-LSO model: lightning_nas.predictors.crlso.CRLSOModel (with ckpt_path its fit "
                      "checkpoint, or none to fit it inside the run)")
    warm_start_hint = "; set strategy.init_args.initial_size >= 2 to fit it on the search's first queries"
    mo: CRLSOMode | None = None  # the multi-objective mode (search/mo_modes.py)

    def __init__(
        self,
        top_k: int = 10,
        step_size: float = 0.1,
        step_increment: float = 0.1,
        max_step_size: float = 2.0,
        noise: float = 0.0,
        noise_increment: float = 0.1,
        normalize_gradient: bool = True,
        max_attempts: int = 500,
        finetune_epochs: int = 50,
        finetune_lr: float = 1e-4,
        finetune_betas: tuple[float, float] = (0.0, 0.5),
        finetune_batch_size: int = 32,
        finetune_latent_noise: float = 0.05,
        warm_start: bool = True,
        seed_latent: str = "encoded",
        finetune_target: str = "zscore",
        finetune_from: str = "last",
        initial_size: int | None = None,
        fit_epochs: int | None = None,
        fit_pool: int | None = None,
    ):
        """Step sizes are unit-free: with `normalize_gradient` the step is eta times the radius of
        the pool's latent cloud (the norm of the per-dimension spread `latent_std`) along the
        unit gradient; with False, Eq. 8 literally: eta times the raw gradient. The noise sigma is
        in units of the per-dimension spread. (The paper's eta / sigma values did not survive;
        the authors' code steps in raw latent units, which depend on the trained model's scale.)
        `initial_size`, `fit_epochs`, `fit_pool`: an unfitted model's warm start (random queries),
        the length of its fit on their labels (epochs over the G-VAE pool) and the size of that pool
        (all of a smaller space: CR-LSO appendix A uses all of NB101 / NB201, 50,000 cells of NB301);
        a fitted model ignores them. None: `UNFITTED_DEFAULTS` (None keeps them out of run recipes)."""
        if top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {top_k}")
        if not 0 < step_size <= max_step_size:
            raise ConfigError(f"need 0 < step_size <= max_step_size, got {step_size} and {max_step_size}")
        if step_increment <= 0 or noise_increment <= 0 or noise < 0:
            raise ConfigError("step_increment and noise_increment must be > 0 and noise >= 0")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be >= 1, got {max_attempts}")
        initial_size, fit_epochs, fit_pool = (default if value is None else value for value, default in
                                              zip((initial_size, fit_epochs, fit_pool), UNFITTED_DEFAULTS))
        if initial_size < 0 or fit_epochs < 1 or fit_pool < 1:
            raise ConfigError(f"need initial_size >= 0, fit_epochs >= 1 and fit_pool >= 1, got {initial_size}, "
                              f"{fit_epochs} and {fit_pool}")
        for name, value, allowed in (("seed_latent", seed_latent, SEED_LATENTS),
                                     ("finetune_target", finetune_target, FINETUNE_TARGETS),
                                     ("finetune_from", finetune_from, FINETUNE_STARTS)):
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        self.top_k, self.step_size, self.step_increment = top_k, step_size, step_increment
        self.max_step_size, self.noise, self.noise_increment = max_step_size, noise, noise_increment
        self.normalize_gradient, self.max_attempts = normalize_gradient, max_attempts
        self.finetune_epochs, self.finetune_lr, self.finetune_betas = finetune_epochs, finetune_lr, tuple(finetune_betas)
        self.finetune_batch_size, self.finetune_latent_noise = finetune_batch_size, finetune_latent_noise
        self.warm_start, self.seed_latent = warm_start, seed_latent
        self.finetune_target, self.finetune_from = finetune_target, finetune_from
        self.initial_size, self.fit_epochs, self.fit_pool = initial_size, fit_epochs, fit_pool

    def warm_start_size(self) -> int:
        return self.initial_size if self.initial_size >= 2 else 0  # the fit learns from pairs

    # --- setup ---------------------------------------------------------------------------
    def setup(self, space, rng, surrogate: LatentSurrogate | None = None) -> None:
        space.require("codec", by="CR-LSO (its graph VAE encodes and decodes architectures)")
        super().setup(space, rng, surrogate)
        self.generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
        self.labelled: dict[str, tuple[Architecture, float]] = {}
        self.asked: set[str] = set()  # proposed keys, told or not (the oracle may not know some)
        self.warm = surrogate.warm_start() if self.warm_start and self._fitted() else []
        self.warm_index = 0
        self.counts = {name: 0 for name in COUNTERS}
        self.last_finetune_loss = float("nan")
        self._latents: dict[tuple[int, ...], torch.Tensor] = {}  # encodings, by genotype
        self.proposed_at: dict[tuple[int, ...], torch.Tensor] = {}  # the point each proposal was decoded from

    # --- ask / tell ----------------------------------------------------------------------
    @property
    def step_unit(self) -> float:
        """eta is in units of the latent cloud's radius when the gradient is normalised."""
        return float(self.surrogate.latent_std.norm()) if self.normalize_gradient else 1.0

    def _fitted(self) -> bool:
        return getattr(self.surrogate, "fitted", True)

    def ask(self, n: int) -> list[Architecture]:
        if self._warm_pending():
            return self._next_warm(n)
        if not self._fitted():
            out = self.sample_unseen(min(n, self.initial_size - len(self.labelled)), self.labelled.keys() | self.asked)
            self.asked |= {self.space.key(a) for a in out}
            self.counts["random_initial"] += len(out)
            return out
        if not self.labelled:
            self.counts["random_initial"] += n
            return [self.space.sample(self.rng) for _ in range(n)]
        taken: set[str] = set()
        out = []
        for seed in self._seeds(min(n, self.top_k)):
            a = self.infer(seed, taken)
            taken.add(self.space.key(a))
            out.append(a)
        self.asked |= taken
        return out

    def _seeds(self, k: int) -> list[Architecture]:
        """The `k` best labelled architectures, or (several objectives) the best by this round's
        random scalarisation of their recorded objectives."""
        if self.mo is None:
            return [a for a, _ in sorted(self.labelled.values(), key=lambda item: -item[1])[:k]]
        self.mo.draw_weights(self.rng)
        archs = [a for a, _ in self.labelled.values()]
        return [archs[i] for i in self.mo.seeds(archs, k)]

    def use_objectives(self, objectives) -> None:
        self.mo = CRLSOMode(objectives, self.surrogate, type(self).__name__)

    def tell(self, archs: Sequence[Architecture], scores: Sequence[float]) -> None:
        for a, s in zip(archs, scores):
            self.labelled[self.space.key(a)] = (a, float(s))
        if not self._fitted():
            if len(self.labelled) < self.initial_size:
                return
            archs = [a for a, _ in self.labelled.values()]
            self.surrogate.fit(archs, [s for _, s in self.labelled.values()], self.fit_epochs, self.fit_pool,
                               int(self.rng.integers(2**31)))
        if not self._warm_pending() and self.labelled:
            self.finetune()

    def _warm_pending(self) -> bool:
        while self.warm_index < len(self.warm) and self.space.key(self.warm[self.warm_index]) in self.labelled:
            self.warm_index += 1
        return self.warm_index < len(self.warm)

    def _next_warm(self, n: int) -> list[Architecture]:
        out = self.warm[self.warm_index : self.warm_index + n]
        self.counts["warm_start_queries"] += len(out)
        return out

    # --- Alg. 2: one new architecture from one seed --------------------------------------
    def ascent_direction(self, z: torch.Tensor) -> torch.Tensor:
        """The gradient of the predicted accuracy at `z` ([d]), unit length if `normalize_gradient`."""
        grad = self.surrogate.ascent(z)
        if self.normalize_gradient:
            grad = grad / grad.norm().clamp_min(1e-12)
        return grad

    def infer(self, seed: Architecture, taken: set[str] = frozenset()) -> Architecture:
        z0 = self.latents([seed])[0]
        direction = self.ascent_direction(z0)
        eta, sigma = self.step_size, self.noise
        attempts = 0
        while attempts < self.max_attempts:
            # the (eta, sigma) schedule is fixed in advance, so a chunk of attempts decodes at once;
            # only the attempts up to the first new architecture count
            chunk = min(DECODE_CHUNK, self.max_attempts - attempts)
            schedule = [(eta, sigma)]
            for _ in range(chunk - 1):
                schedule.append(self._grow(*schedule[-1]))
            etas, sigmas = (torch.tensor(v, dtype=z0.dtype, device=z0.device).unsqueeze(1) for v in zip(*schedule))
            eps = torch.randn(chunk, z0.shape[0], generator=self.generator).to(z0.device)
            points = z0 + (etas * self.step_unit * direction + sigmas * self.surrogate.latent_std * eps)
            for point, decoded in zip(points, self.surrogate.decode(points)):
                attempts += 1
                self._count(decoded.status)
                if decoded.arch is not None:
                    key = self.space.key(decoded.arch)
                    new = self._is_new(key, taken)
                    if new and self.answerable(decoded.arch):
                        self.counts["proposed"] += 1
                        if self.seed_latent == "proposed":
                            self.proposed_at[decoded.arch.genotype] = point.clone()
                        return decoded.arch
                    self.counts["decoded_known" if not new else "decoded_unanswerable"] += 1
                grown = self._grow(eta, sigma)
                self.counts["step_increases" if grown[0] > eta else "noise_increases"] += 1
                eta, sigma = grown
        return self._fallback(seed, taken)

    def _is_new(self, key: str, taken: set[str]) -> bool:
        return key not in self.labelled and key not in self.asked and key not in taken

    def _grow(self, eta: float, sigma: float) -> tuple[float, float]:
        """Alg. 2: a larger step while below the maximum, then more noise."""
        if eta < self.max_step_size:
            return min(eta + self.step_increment, self.max_step_size), sigma
        return eta, sigma + self.noise_increment

    def _count(self, status: str) -> None:
        self.counts["decodes"] += 1
        self.counts[{VALID: "decoded_valid", REPAIRED: "decoded_repaired", INVALID: "decoded_invalid"}[status]] += 1

    def _fallback(self, seed: Architecture, taken: set[str]) -> Architecture:
        self.counts["fallback_mutations"] += 1
        options = [a for a in self.space.neighbours(seed)
                   if self._is_new(self.space.key(a), taken) and self.answerable(a)]
        if options:
            return options[int(self.rng.integers(len(options)))]
        if self._answerable is not None:  # table_only: a new architecture the oracle can answer
            fresh = self.sample_unseen(1, self.labelled.keys() | self.asked | taken)
            return (fresh or [self.space.sample(self.rng)])[0]
        return self.space.sample(self.rng)

    # --- the ICNN fine-tune (Alg. 3) -----------------------------------------------------
    def latents(self, archs: Sequence[Architecture]) -> torch.Tensor:
        """Each architecture's latent point: where it was proposed from (`seed_latent="proposed"`),
        else (and for the warm start's and fallback's architectures) its encoding."""
        points = self.proposed_at if self.seed_latent == "proposed" else {}
        missing = [a for a in archs if a.genotype not in self._latents and a.genotype not in points]
        if missing:
            for a, z in zip(missing, self.surrogate.embed(missing)):
                self._latents[a.genotype] = z
        return torch.stack([points.get(a.genotype, self._latents.get(a.genotype)) for a in archs])

    def finetune(self) -> None:
        archs = [a for a, _ in self.labelled.values()]
        y = torch.tensor([s for _, s in self.labelled.values()], dtype=torch.float32)
        z = self.latents(archs)
        target = normal_scores(y) if self.finetune_target == "rank" else self.surrogate.standardise(y)
        self.last_finetune_loss = self.surrogate.finetune(
            z, target.to(z.device), self.finetune_epochs, self.finetune_lr, self.finetune_betas,
            self.finetune_batch_size, self.finetune_latent_noise, self.generator,
            restart=self.finetune_from == "fit",
        )
        self.counts["finetunes"] += 1

    # --- results and resumption ----------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        unanswered = len(self.asked - self.labelled.keys())  # proposed, but the oracle had no answer
        return {**self.counts, "labelled": len(self.labelled), "unanswered": unanswered,
                "last_finetune_loss": self.last_finetune_loss}

    def state_dict(self) -> dict[str, Any]:
        archs = [a for a, _ in self.labelled.values()]
        return {
            "labelled": self._pack(archs),
            "scores": [s for _, s in self.labelled.values()],
            "asked": sorted(self.asked),
            "warm": self._pack(self.warm),
            "warm_index": self.warm_index,
            "counts": dict(self.counts),
            "last_finetune_loss": self.last_finetune_loss,
            "generator": self.generator.get_state(),
            "proposed": [list(g) for g in self.proposed_at],
            "proposed_at": torch.stack(list(self.proposed_at.values())).cpu() if self.proposed_at else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        archs = self._unpack(state["labelled"])
        self.labelled = {self.space.key(a): (a, float(s)) for a, s in zip(archs, state["scores"])}
        self.asked = set(state["asked"])
        self.warm = self._unpack(state["warm"])
        self.warm_index = int(state["warm_index"])
        self.counts = {name: int(state["counts"].get(name, 0)) for name in COUNTERS}
        self.last_finetune_loss = float(state["last_finetune_loss"])
        self.generator.set_state(state["generator"])
        points = state.get("proposed_at")  # absent in states written before seed_latent existed
        self.proposed_at = {tuple(g): z.to(self.surrogate.latent_std.device) for g, z in
                            zip(state.get("proposed", []), points if points is not None else [])}


def normal_scores(y: torch.Tensor) -> torch.Tensor:
    """The standard-normal quantile of each value's rank, (rank + 0.5) / n (ties in the order given)."""
    ranks = torch.argsort(torch.argsort(y, stable=True), stable=True).double()
    return torch.special.ndtri((ranks + 0.5) / len(y)).to(y.dtype)
