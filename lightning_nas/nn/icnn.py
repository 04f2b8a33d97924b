"""Input-convex neural network (Amos et al. 2017; CR-LSO Eq. 6).

    h_1     = act(W_0^x x + b_0)
    h_{l+1} = act(W_l^z h_l + W_l^x x + b_l)      l = 1 .. L-1
    f(x)    = W_L^z h_L + W_L^x x + b_L

The output is convex in `x` when every hidden-to-hidden weight `W^z` is non-negative and `act` is
convex and non-decreasing (CR-LSO Lemma 1). `W^x` (the skip paths from the input) is free.
Non-negativity is kept the way the paper's code keeps it: a projection (clamp at zero) after every
optimizer step; `project_()` does it and `is_convex_by_construction()` checks it.
"""
from __future__ import annotations

import torch
from torch import nn

from lightning_nas.errors import ConfigError

#: activations that are convex and non-decreasing (LeakyReLU needs a slope in [0, 1])
CONVEX_ACTIVATIONS = ("leaky_relu", "relu", "softplus")


def convex_activation(name: str, negative_slope: float = 0.01) -> nn.Module:
    if name == "leaky_relu":
        if not 0.0 <= negative_slope <= 1.0:
            raise ConfigError(f"LeakyReLU is convex and non-decreasing only for a slope in [0, 1], got {negative_slope}")
        return nn.LeakyReLU(negative_slope)
    if name == "relu":
        return nn.ReLU()
    if name == "softplus":
        return nn.Softplus()
    raise ConfigError(f"activation {name!r} is not one of the convex non-decreasing ones: {', '.join(CONVEX_ACTIVATIONS)}")


class ICNN(nn.Module):
    """A scalar function of `x` that is convex in `x` (after `project_()`)."""

    def __init__(self, in_features: int, hidden: int = 256, num_layers: int = 3, activation: str = "leaky_relu"):
        """`num_layers` counts the hidden layers (CR-LSO appendix A: 3 layers of 256)."""
        super().__init__()
        if num_layers < 1:
            raise ConfigError(f"an ICNN needs at least one hidden layer, got num_layers={num_layers}")
        self.act = convex_activation(activation)
        self.input_layer = nn.Linear(in_features, hidden)
        # z-paths: hidden -> hidden and hidden -> output, constrained non-negative, no bias (the x-path has it)
        self.z_layers = nn.ModuleList(nn.Linear(hidden, hidden, bias=False) for _ in range(num_layers - 1))
        self.z_layers.append(nn.Linear(hidden, 1, bias=False))
        self.x_layers = nn.ModuleList(nn.Linear(in_features, hidden) for _ in range(num_layers - 1))
        self.x_layers.append(nn.Linear(in_features, 1))
        self._init_nonnegative()

    def _init_nonnegative(self) -> None:
        # a sum of `hidden` non-negative terms grows with width; scale so activations keep their size
        with torch.no_grad():
            for layer in self.z_layers:
                fan_in = layer.weight.shape[1]
                layer.weight.uniform_(0.0, 2.0 / fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_features] -> [B]."""
        h = self.act(self.input_layer(x))
        for z_layer, x_layer in zip(self.z_layers[:-1], self.x_layers[:-1]):
            h = self.act(z_layer(h) + x_layer(x))
        return (self.z_layers[-1](h) + self.x_layers[-1](x)).squeeze(-1)

    def constrained_weights(self) -> list[torch.Tensor]:
        return [layer.weight for layer in self.z_layers]

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the hidden-to-hidden weights at zero; call after every optimizer step."""
        for weight in self.constrained_weights():
            weight.clamp_(min=0.0)

    def is_convex_by_construction(self) -> bool:
        return all(bool((w >= 0).all()) for w in self.constrained_weights())


class MLPHead(nn.Module):
    """The unconstrained control: an MLP with the ICNN's depth, width and activation, free weights."""

    def __init__(self, in_features: int, hidden: int = 256, num_layers: int = 3, activation: str = "leaky_relu"):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden), convex_activation(activation)]
            width = hidden
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)

    def project_(self) -> None:
        """Nothing to keep: the MLP is the unconstrained control."""
