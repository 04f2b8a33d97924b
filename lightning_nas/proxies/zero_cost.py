"""Zero-cost proxies: scores of an untrained network that rank architectures without training.

Each proxy follows the reference implementation named beside it (NASLib / zero-cost-nas
"measures", NASWOT, ZenNAS) and is computed on a freshly initialised network, so a score depends
only on the architecture, the seed (weights, and the Gaussian inputs of Zen-score) and the batch.
Data-free proxies (params, flops, synflow, zen) need only the input shape; the others take a
small real batch. All scores are returned as Python floats (float64); some (synflow) span
hundreds of orders of magnitude, so compare them by rank or after a log.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import Architecture, get_space
from lightning_nas.spaces.flops import compute_every_op, count_flops
from lightning_nas.spaces.layers import count_parameters


@dataclass(frozen=True)
class ProxyBatch:
    """The inputs a proxy sees: images [B, C, H, W] and integer labels [B]."""

    inputs: torch.Tensor
    targets: torch.Tensor

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    @classmethod
    def gaussian(cls, input_shape: Sequence[int], batch_size: int, num_classes: int, seed: int) -> "ProxyBatch":
        """A data-free stand-in (only for proxies that do not read the data, or for tests)."""
        g = torch.Generator().manual_seed(seed)
        return cls(torch.randn(batch_size, *input_shape, generator=g), torch.randint(num_classes, (batch_size,), generator=g))


Proxy = Callable[[nn.Module, ProxyBatch], float]


def _weighted_layers(net: nn.Module) -> list[nn.Module]:
    """The layers whose weights the gradient-based proxies read (NASLib: Conv2d and Linear)."""
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_backward(net: nn.Module, batch: ProxyBatch) -> None:
    net.train()
    net.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(net(batch.inputs), batch.targets).backward()


# --- data-free --------------------------------------------------------------------------------
def params(net: nn.Module, batch: ProxyBatch) -> float:
    return float(count_parameters(net))


def flops(net: nn.Module, batch: ProxyBatch) -> float:
    """MFLOPs of one input under NAS-Bench-Suite-Zero's convention (NASLib's `flops` proxy;
    `lightning_nas.spaces.flops`), every op of every cell counted."""
    return count_flops(net, batch.input_shape)


def synflow(net: nn.Module, batch: ProxyBatch) -> float:
    """SynFlow (Tanaka et al., 2020; NASLib `synflow`, bn=False): BN removed, |weights| in float64,
    an all-ones input, score = sum |w * d(sum output)/dw| over conv and linear weights."""
    net = _without_batchnorm(copy.deepcopy(net)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    net(torch.ones(1, *batch.input_shape, dtype=torch.float64)).sum().backward()
    return _sum_over_layers(net, lambda m: (m.weight * m.weight.grad).abs())


def _without_batchnorm(net: nn.Module) -> nn.Module:
    for name, child in net.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(net, name, nn.Identity())
        else:
            _without_batchnorm(child)
    return net


@torch.no_grad()
def zen(net: nn.Module, batch: ProxyBatch, mixup_gamma: float = 1e-2) -> float:
    """Zen-score (Lin et al., 2021; official `compute_zen_score`, one repeat): Gaussian weights,
    log of the mean L1 change of the pre-pooling features under a small Gaussian perturbation
    of a Gaussian input, plus the log BN scaling (sqrt of the mean running variance) of every BN."""
    _gaussian_init(net)
    net.train()
    shape = (batch.inputs.shape[0], *batch.input_shape)
    x = torch.randn(shape)
    perturbed = x + mixup_gamma * torch.randn(shape)
    delta = (net.features(x) - net.features(perturbed)).abs().sum(dim=(1, 2, 3)).mean()
    log_bn = sum(torch.log(torch.sqrt(m.running_var.mean())) for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    return float(torch.log(delta) + log_bn)


def _gaussian_init(net: nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d) and m.affine:  # NASLib's DARTS cells use BN without affine
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# --- one batch of data ------------------------------------------------------------------------
def gradient_pass(net: nn.Module, batch: ProxyBatch) -> dict[str, float]:
    """SNIP, grad_norm, Fisher and NASWOT from one forward/backward of the cross-entropy loss in
    train mode (each equals its stand-alone computation on the same initial weights).

    - snip (Lee et al., 2019; NASLib `snip`): sum |w * dL/dw| over conv and linear weights.
    - grad_norm (NASLib `grad_norm`): sum over conv and linear layers of ||dL/dw||_2.
    - fisher (Turner et al., 2020; NASLib `fisher`): per conv/linear output channel, 0.5 * mean
      over the batch of (sum over positions of activation * dL/dactivation)^2, summed.
    - nwot (Mellor et al., 2021): binary codes of every ReLU's input; K counts, per pair of samples,
      the units on which their codes agree; score = log|det K|."""
    n = batch.inputs.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64)
    fisher_total = [torch.zeros((), dtype=torch.float64)]

    def relu_hook(_m, inp, _out):
        codes = (inp[0].detach().reshape(n, -1) > 0).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    def layer_hook(_m, _inp, out):
        activation = out.detach()  # the hook must not hold `out` itself: that cycle leaks the whole graph

        def grad_hook(grad):
            g = (activation * grad).double()
            per_channel = g.sum(dim=tuple(range(2, g.dim()))) if g.dim() > 2 else g
            fisher_total[0] = fisher_total[0] + 0.5 * per_channel.pow(2).mean(0).sum()

        out.register_hook(grad_hook)

    handles = [m.register_forward_hook(relu_hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    handles += [m.register_forward_hook(layer_hook) for m in _weighted_layers(net)]
    try:
        _loss_backward(net, batch)
    finally:
        for h in handles:
            h.remove()
    return {
        "snip": _sum_over_layers(net, lambda m: (m.weight * m.weight.grad).abs()),
        "grad_norm": _sum_over_layers(net, lambda m: m.weight.grad.norm()),
        "fisher": float(fisher_total[0]),
        "nwot": float(torch.linalg.slogdet(kernel).logabsdet),
    }


def snip(net: nn.Module, batch: ProxyBatch) -> float:
    return gradient_pass(net, batch)["snip"]


def grad_norm(net: nn.Module, batch: ProxyBatch) -> float:
    return gradient_pass(net, batch)["grad_norm"]


def fisher(net: nn.Module, batch: ProxyBatch) -> float:
    return gradient_pass(net, batch)["fisher"]


def nwot(net: nn.Module, batch: ProxyBatch) -> float:
    return gradient_pass(net, batch)["nwot"]


def jacov(net: nn.Module, batch: ProxyBatch) -> float:
    """Jacobian covariance (Mellor et al., 2021 v1; NASLib `jacov`): correlations between the
    per-sample input gradients of the summed output, score = -sum(log(l + k) + 1 / (l + k))
    over their eigenvalues l, k = 1e-5. A sample whose gradient is constant (an output that
    ignores the input) gets zero correlation, i.e. eigenvalue 0 and the worst possible score."""
    net.train()
    x = batch.inputs.clone().requires_grad_(True)
    out = net(x)
    if out.requires_grad:
        out.backward(torch.ones_like(out))
    grad = x.grad if x.grad is not None else torch.zeros_like(x)  # an output that ignores the input
    jacobian = grad.reshape(x.shape[0], -1).double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.nan_to_num(np.corrcoef(jacobian), nan=0.0)
    eigenvalues = np.clip(np.linalg.eigvalsh(corr), 0.0, None)
    k = 1e-5
    return float(-np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))


def grasp(net: nn.Module, batch: ProxyBatch) -> float:
    """GraSP (Wang et al., 2020; NASLib `grasp`, T = 1, one pass): score = sum(-w * Hg), where
    g = dL/dw and Hg is the Hessian-gradient product, over conv and linear weights."""
    net.train()
    layers = _weighted_layers(net)
    weights = [m.weight for m in layers]
    loss = nn.functional.cross_entropy(net(batch.inputs), batch.targets)
    g = torch.autograd.grad(loss, weights, allow_unused=True)
    loss = nn.functional.cross_entropy(net(batch.inputs), batch.targets)
    g_graph = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    z = sum((gi.detach() * gg).sum() for gi, gg in zip(g, g_graph) if gi is not None and gg is not None)
    net.zero_grad(set_to_none=True)
    if isinstance(z, torch.Tensor) and z.requires_grad:
        z.backward()
    return _sum_over_layers(net, lambda m: -m.weight.detach() * m.weight.grad)


@torch.no_grad()
def _sum_over_layers(net: nn.Module, metric: Callable[[nn.Module], torch.Tensor]) -> float:
    total = 0.0
    for m in _weighted_layers(net):
        if m.weight.grad is not None:
            total += float(metric(m).double().sum())
    return total


PROXIES: dict[str, Proxy] = {
    "params": params,
    "flops": flops,
    "synflow": synflow,
    "snip": snip,
    "grad_norm": grad_norm,
    "jacov": jacov,
    "nwot": nwot,
    "fisher": fisher,
    "grasp": grasp,
    "zen": zen,
}
DATA_FREE = frozenset({"params", "flops", "synflow", "zen"})
GRADIENT_PASS = frozenset({"snip", "grad_norm", "fisher", "nwot"})


def check_proxy(name: str) -> Proxy:
    try:
        return PROXIES[name]
    except KeyError:
        raise ConfigError(f"unknown zero-cost proxy {name!r}; available: {', '.join(PROXIES)}") from None


def score_architecture(
    a: Architecture,
    proxy: str,
    batch: ProxyBatch,
    seed: int = 0,
    num_classes: int = 10,
    network_options: dict | None = None,
) -> float:
    """The proxy's score for `a`: the network is built and initialised under `seed` (the global
    torch RNG is restored afterwards, so a caller's random stream is not disturbed)."""
    return float(_on_fresh_network(a, check_proxy(proxy), batch, seed, num_classes, network_options))


def _on_fresh_network(a: Architecture, fn, batch: ProxyBatch, seed: int, num_classes: int, network_options: dict | None):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = get_space(a.space).network(a, num_classes, batch.input_shape[0], **(network_options or {}))
        return fn(compute_every_op(net), batch)  # as the benchmarks' own networks run


def score_proxies(
    a: Architecture,
    proxies: Sequence[str],
    batch: ProxyBatch,
    seed: int = 0,
    num_classes: int = 10,
    network_options: dict | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(score, seconds) per proxy, each on a fresh network initialised under `seed`; the proxies of
    `gradient_pass` share one pass (their seconds are that pass's time, split evenly)."""
    for name in proxies:
        check_proxy(name)
    shared = [p for p in proxies if p in GRADIENT_PASS]
    scores, seconds = {}, {}
    if shared:
        start = time.perf_counter()
        values = _on_fresh_network(a, gradient_pass, batch, seed, num_classes, network_options)
        for p in shared:
            scores[p], seconds[p] = values[p], (time.perf_counter() - start) / len(shared)
    for p in proxies:
        if p not in GRADIENT_PASS:
            start = time.perf_counter()
            scores[p] = float(_on_fresh_network(a, PROXIES[p], batch, seed, num_classes, network_options))
            seconds[p] = time.perf_counter() - start
    return {p: scores[p] for p in proxies}, {p: seconds[p] for p in proxies}
