"""Zero-cost proxies: finite, deterministic per seed, data-free where they claim to be, and usable
as an Oracle and as a Surrogate."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.data.images import DigitsDataModule
from lightning_nas.proxies import oracle as proxy_oracle
from lightning_nas.proxies.oracle import ProxyOracle, ProxySurrogate, signed_log
from lightning_nas.proxies.zero_cost import (
    DATA_FREE,
    PROXIES,
    ProxyBatch,
    score_architecture,
    score_proxies,
)
from lightning_nas.spaces import get_space
from lightning_nas.spaces.flops import compute_every_op

NB201 = get_space("nb201")
SMALL = {"channels": 8, "cells_per_stage": 1}
CONVS = NB201.from_string("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
POOLS = NB201.from_string("|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|avg_pool_3x3~1|skip_connect~2|")
EMPTY = NB201.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny networks: one torch thread avoids spinning on shared cores (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(image_size=16, channels=3, seed=0)
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def batch(digits) -> ProxyBatch:
    return ProxyBatch(*digits.sample_batch(16, seed=0))


@pytest.fixture(scope="module")
def scores(batch):
    return {a: score_proxies(a, list(PROXIES), batch, seed=0, network_options=SMALL)[0] for a in (CONVS, POOLS)}


def test_every_proxy_is_finite(scores):
    for values in scores.values():
        assert set(values) == set(PROXIES)
        assert all(math.isfinite(v) for v in values.values()), values


def test_every_proxy_is_deterministic_for_a_seed_and_varies_with_it(batch, scores):
    again = score_proxies(CONVS, list(PROXIES), batch, seed=0, network_options=SMALL)[0]
    assert again == scores[CONVS]
    other = score_proxies(CONVS, list(PROXIES), batch, seed=1, network_options=SMALL)[0]
    weight_dependent = set(PROXIES) - {"params", "flops"}
    assert all(other[p] != scores[CONVS][p] for p in weight_dependent), other


def test_proxies_leave_the_callers_random_stream_alone(batch):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    score_architecture(CONVS, "zen", batch, seed=5, network_options=SMALL)
    torch.testing.assert_close(torch.rand(3), expected)


def test_data_free_proxies_ignore_the_data(batch, scores):
    noise = ProxyBatch.gaussian(batch.input_shape, 16, 10, seed=7)
    for proxy in DATA_FREE:
        assert score_architecture(CONVS, proxy, noise, seed=0, network_options=SMALL) == scores[CONVS][proxy]


def test_size_proxies_rank_a_conv_cell_above_a_pooling_cell(scores):
    for proxy in ("params", "flops", "synflow"):
        assert scores[CONVS][proxy] > scores[POOLS][proxy]


def test_snip_and_grad_norm_match_a_direct_autograd_computation(batch, scores):
    torch.manual_seed(0)
    net = compute_every_op(NB201.network(CONVS, **SMALL))
    net.train()
    loss = nn.functional.cross_entropy(net(batch.inputs), batch.targets)
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    grads = torch.autograd.grad(loss, [m.weight for m in layers])
    snip = sum(float((m.weight * g).abs().sum()) for m, g in zip(layers, grads))
    norm = sum(float(g.norm()) for g in grads)
    assert scores[CONVS]["snip"] == pytest.approx(snip, rel=1e-6)
    assert scores[CONVS]["grad_norm"] == pytest.approx(norm, rel=1e-6)


def test_nwot_counts_agreeing_relu_codes(batch):
    """With identical samples every code agrees: K = (units) * ones, singular; distinct samples are not."""
    twin = ProxyBatch(batch.inputs[:1].repeat(4, 1, 1, 1), batch.targets[:1].repeat(4))
    assert score_architecture(CONVS, "nwot", twin, seed=0, network_options=SMALL) == -math.inf
    assert math.isfinite(score_architecture(CONVS, "nwot", ProxyBatch(batch.inputs[:4], batch.targets[:4]), seed=0, network_options=SMALL))


def test_jacov_gives_an_input_blind_network_its_worst_finite_score(batch, scores):
    blind = score_architecture(EMPTY, "jacov", batch, seed=0, network_options=SMALL)
    k = 1e-5
    assert blind == pytest.approx(-len(batch.inputs) * (math.log(k) + 1 / k))
    assert blind < scores[CONVS]["jacov"]


def test_unknown_proxy_is_refused(batch):
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'nswot'.*available: params"):
        score_architecture(CONVS, "nswot", batch)


def test_proxy_oracle_scores_reports_and_counts(digits):
    oracle = ProxyOracle("nb201", "synflow", datamodule=digits, batch_size=8, report=["params"], budget=2, network=SMALL)
    first = oracle.evaluate(CONVS)
    assert first.score == first.report["synflow"] and first.report["params"] > 0 and first.cost > 0
    assert oracle.evaluate(CONVS) is first
    oracle.evaluate(POOLS)
    assert oracle.used == 2


def test_proxy_oracle_needs_data_for_data_dependent_proxies():
    with pytest.raises(ValueError, match="snip read a batch of real data: give `datamodule:`"):
        ProxyOracle("nb201", "snip")
    assert ProxyOracle("nb201", "params", input_shape=(3, 8, 8)).evaluate(EMPTY).score == 73_306


def test_proxy_surrogate_keeps_the_proxy_order_and_caches(digits, monkeypatch):
    calls = []
    real = proxy_oracle.score_proxies

    def counting(a, *args, **kwargs):
        calls.append(a)
        return real(a, *args, **kwargs)

    monkeypatch.setattr(proxy_oracle, "score_proxies", counting)
    surrogate = ProxySurrogate("nb201", "synflow", datamodule=digits, batch_size=8, network=SMALL)
    archs = [CONVS, POOLS, EMPTY]
    scores = surrogate.score(archs)
    assert scores.dtype == torch.float64 and len(calls) == 3
    raw = [surrogate.cache[NB201.key(a)] for a in archs]
    assert np.argsort(scores.numpy()).tolist() == np.argsort(raw).tolist()
    assert scores[0].item() == signed_log(raw[0])
    surrogate.score(archs[:2])
    assert len(calls) == 3
    surrogate.update(archs[:1], [91.0])  # a proxy learns nothing from labels
    assert torch.equal(surrogate.score(archs), scores) and len(calls) == 3
