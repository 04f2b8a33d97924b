"""FLOPs conventions: NAS-Bench-Suite-Zero's ("naslib") on NB201, NB101, TNB101; xautodl's rules."""
from __future__ import annotations

import csv
import gzip

import numpy as np
import pytest
import torch
from torch import nn

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.base import get_space
from lightning_nas.spaces.cell_on_edges.network import EdgeCell
from lightning_nas.spaces.nb101.network import nb101_network
from lightning_nas.proxies.zero_cost import ProxyBatch, flops
from lightning_nas.spaces.flops import count_flops

NB201 = get_space("nb201")
TNB101 = get_space("tnb101_micro")

# NAS-Bench-Suite-Zero's NB201 FLOPs (issue 32): CIFAR-10 at 32x32 (CIFAR-100 adds 64 * 90 of the
# classifier), ImageNet16-120 at 16x16; nodes that never reach the output are counted.
REFERENCES = {
    "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|": (88.307392, 22.084672),
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|": (50.706112, 12.684352),
    "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|none~2|": (115.402432, 28.858432),
    "|skip_connect~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|": (12.306112, 3.084352),
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|": (89.597632, 22.407232),
}


def _tiny() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=True),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2, 2),
        nn.BatchNorm2d(4, affine=False),
        nn.AvgPool2d(3, 1, 1, count_include_pad=False),
        nn.Identity(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )


def test_each_rule_of_both_conventions():
    # 8x8 input: conv 9*3*4*64 + bias 4*64; BN 2*256; ReLU 256; max pool 4*64; BN 64 (no affine);
    # avg pool 9*64; global pool (4+1)^2*4; linear 4*5 (+5 bias for xautodl only)
    naslib = 7168 + 512 + 256 + 256 + 64 + 576 + 100 + 20
    assert count_flops(_tiny(), (3, 8, 8)) * 1e6 == pytest.approx(naslib)
    assert count_flops(_tiny(), (3, 8, 8), "xautodl") * 1e6 == pytest.approx(7168 + 25)
    with pytest.raises(ConfigError, match="known: naslib, xautodl"):
        count_flops(_tiny(), (3, 8, 8), "thop")


@pytest.mark.parametrize("arch", list(REFERENCES))
def test_nb201_flops_equal_nas_bench_suite_zero(arch):
    cifar, imagenet = REFERENCES[arch]
    a = NB201.from_string(arch)
    datasets = ((10, 32, cifar), (100, 32, cifar + 0.00576), (120, 16, imagenet))
    for classes, size, expected in datasets:
        net = get_space(a.space).network(a, num_classes=classes)  # skips dead nodes when it runs
        counted = count_flops(net, (3, size, size))
        assert counted == pytest.approx(expected, abs=1e-6), (classes, size)


def test_the_flops_proxy_counts_dead_nodes_and_leaves_the_network_pruned():
    dead = NB201.from_string(
        "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    )
    alive = NB201.from_string("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")
    batch = ProxyBatch(torch.zeros(1, 3, 32, 32), torch.zeros(1, dtype=torch.long))
    net = get_space(dead.space).network(dead).train()
    # node 1 and node 2 are dead: their three convs are still counted, 5 cells x 3 stages each
    conv3x3 = 9 * 16 * 16 * 32 * 32  # C^2 HW is the same in every stage
    convs = 15 * (2 * conv3x3 + conv3x3 // 9)
    # 3 ops x (ReLU + 2 for an affine BN) x 5 cells, per element of each stage
    relu_bn = 3 * 3 * 5 * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
    expected = flops(get_space(alive.space).network(alive), batch) + (convs + relu_bn) / 1e6
    assert flops(net, batch) == pytest.approx(expected, abs=1e-6)
    assert net.training and not any(m.every_op for m in net.modules() if isinstance(m, EdgeCell))


def test_tnb101_counts_ops_on_dead_nodes():
    # node 3 <- 0 skip only; the conv3x3 on node 1 <- 0 feeds no path to the output in either cell
    archs = [TNB101.from_string(s) for s in ("64-41414-3_00_100", "64-41414-0_00_100")]
    counted = [count_flops(get_space(a.space).network(a, num_classes=100), (3, 32, 32)) for a in archs]
    assert counted[0] > counted[1]


def _nb101_rows(shared):
    with gzip.open(shared / "nb101_graphs_500.csv.gz", "rt") as f:
        return list(csv.DictReader(f))


def _check_nb101(rows) -> None:
    for r in rows:
        n = int(round(len(r["matrix"]) ** 0.5))
        matrix = np.array([int(c) for c in r["matrix"]]).reshape(n, n)
        net = nb101_network(matrix, r["ops"].split(","))
        # the table keeps 4 decimals
        assert count_flops(net, (3, 32, 32)) == pytest.approx(float(r["flops_m"]), abs=5e-5), r


def test_nb101_flops_equal_the_table_on_a_sample(shared):
    _check_nb101(_nb101_rows(shared)[::25])


@pytest.mark.slow
def test_nb101_flops_equal_the_table_for_all_500_graphs(shared):
    _check_nb101(_nb101_rows(shared))
