"""An LSTM policy that writes a genotype of any space one token at a time (CTNAS's controller).

The flat decision view of a space (`space.choices()`: the number of options at each genotype
position) is all the controller needs: NB201 gives six op tokens, spaces whose genotype also
names inputs (NB101's adjacency, DARTS' input nodes) give those positions as tokens too. Invalid
samples (possible in NB101) are reported by `split_valid` and either resampled
(`sample_valid`) or penalised by the caller; nothing is silently dropped.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, SearchSpace


@dataclass
class PolicySample:
    genotypes: torch.Tensor  # [N, L] long
    log_prob: torch.Tensor  # [N], summed over tokens; differentiable
    entropy: torch.Tensor  # [N], summed over tokens; differentiable


class ArchitectureController(nn.Module):
    """LSTMCell over the genotype positions; the token chosen at position i is embedded (one
    table row per (position, option)) and fed as the next input. Defaults follow the authors'
    NB101 controller: hidden size 64, weights uniform in [-0.1, 0.1], no temperature or tanh."""

    def __init__(
        self,
        choices: Sequence[int],
        hidden_size: int = 64,
        temperature: float | None = None,
        tanh_constant: float | None = None,
    ):
        super().__init__()
        self.choices = [int(c) for c in choices]
        if not self.choices or min(self.choices) < 1:
            raise ConfigError(f"every genotype position needs at least one option, got choices={self.choices}")
        if temperature is not None and temperature <= 0:
            raise ConfigError(f"temperature must be positive, got {temperature}")
        self.hidden_size, self.temperature, self.tanh_constant = hidden_size, temperature, tanh_constant
        self.register_buffer("offsets", torch.tensor([0, *self.choices[:-1]]).cumsum(0), persistent=False)
        self.token_embedding = nn.Embedding(sum(self.choices), hidden_size)
        self.start = nn.Parameter(torch.zeros(1, hidden_size))
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.ModuleList(nn.Linear(hidden_size, c) for c in self.choices)
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)

    def _logits(self, hidden: torch.Tensor, position: int) -> torch.Tensor:
        logits = self.heads[position](hidden)
        if self.temperature is not None:
            logits = logits / self.temperature
        if self.tanh_constant is not None:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _rollout(
        self, num: int, genotypes: torch.Tensor | None, generator: torch.Generator | None
    ) -> PolicySample:
        inputs = self.start.expand(num, -1)
        state = None
        tokens, log_probs, entropies = [], [], []
        for i in range(len(self.choices)):
            state = self.lstm(inputs, state)
            log_p = torch.log_softmax(self._logits(state[0], i), dim=-1)
            if genotypes is None:
                token = torch.multinomial(log_p.exp().detach(), 1, generator=generator).squeeze(1)
            else:
                token = genotypes[:, i]
            log_probs.append(log_p.gather(1, token.unsqueeze(1)).squeeze(1))
            entropies.append(-(log_p.exp() * log_p).sum(-1))
            tokens.append(token)
            inputs = self.token_embedding(token + self.offsets[i])
        return PolicySample(torch.stack(tokens, 1), torch.stack(log_probs, 1).sum(1), torch.stack(entropies, 1).sum(1))

    def sample(self, num: int, generator: torch.Generator | None = None) -> PolicySample:
        """`num` genotypes drawn from the policy, with their (differentiable) log-prob and entropy."""
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        return self._rollout(num, None, generator)

    def evaluate(self, genotypes: torch.Tensor | Sequence[Sequence[int]]) -> PolicySample:
        """Log-prob and entropy of given genotypes under the current policy (teacher forcing)."""
        genotypes = torch.as_tensor(genotypes, dtype=torch.long, device=self.start.device)
        if genotypes.dim() != 2 or genotypes.size(1) != len(self.choices):
            raise ValueError(f"expected genotypes of shape [N, {len(self.choices)}], got {tuple(genotypes.shape)}")
        limits = torch.tensor(self.choices, device=genotypes.device)
        if (genotypes < 0).any() or (genotypes >= limits).any():
            raise ValueError("a genotype token is outside its position's options (space.choices())")
        return self._rollout(genotypes.size(0), genotypes, None)


def split_valid(space: SearchSpace, genotypes: torch.Tensor) -> tuple[list[Architecture], torch.Tensor]:
    """Architectures for every row and a bool mask of the rows `space.is_valid` accepts."""
    archs = [space.make(g) for g in genotypes.tolist()]
    return archs, torch.tensor([space.is_valid(a) for a in archs], dtype=torch.bool)


@torch.no_grad()
def sample_valid(
    controller: ArchitectureController,
    space: SearchSpace,
    num: int,
    generator: torch.Generator | None = None,
    max_draws: int = 50,
) -> tuple[list[Architecture], int]:
    """`num` valid architectures from the policy, resampling invalid ones; returns them and how
    many invalid samples were drawn (and discarded) on the way."""
    valid: list[Architecture] = []
    invalid = 0
    for _ in range(max_draws):
        archs, mask = split_valid(space, controller.sample(num - len(valid), generator).genotypes)
        valid += [a for a, ok in zip(archs, mask.tolist()) if ok]
        invalid += int((~mask).sum())
        if len(valid) == num:
            return valid, invalid
    raise ConfigError(
        f"the controller drew {invalid} invalid {space.name} architectures and only {len(valid)} of {num} "
        f"valid ones in max_draws={max_draws} rounds: raise strategy max_draws (an untrained controller picks "
        "each gene on its own, and on DARTS about 1 draw in 25 is a valid cell: configs/darts/ctnas.yaml uses 400)"
    )
