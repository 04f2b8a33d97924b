"""The DARTS network NAS-Bench-301 trains: parameter counts and FLOPs equal the NB301 table's."""
from __future__ import annotations

import csv
import gzip

import pytest
import torch

from lightning_nas.errors import ConfigError
from lightning_nas.spaces.darts import DARTS, Genotype
from lightning_nas.spaces.darts.network import AuxiliaryHead, DARTSCell, darts_network
from lightning_nas.spaces.layers import FactorizedReduce
from lightning_nas.spaces.flops import count_flops

# DARTS (second order) as published (quark0/darts `cnn/genotypes.py`, DARTS_V2)
DARTS_V2 = Genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    normal_concat=[2, 3, 4, 5],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
    reduce_concat=[2, 3, 4, 5],
)


@pytest.fixture(scope="module")
def nb301(shared):
    with gzip.open(shared / "nb301_500.csv.gz", "rt") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 500
    return rows


def _params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def _check_counts(rows) -> None:
    for r in rows:
        net = DARTS.network(DARTS.from_string(r["arch"]))
        assert _params(net) == round(float(r["params_m"]) * 1e6), r["arch"]
        flops = round(count_flops(net, (3, 32, 32)) * 1e6)
        assert flops == round(float(r["flops_m"]) * 1e6), r["arch"]


def test_params_and_flops_equal_nb301_on_a_sample(nb301):
    _check_counts(nb301[::25])


@pytest.mark.slow
def test_params_and_flops_equal_nb301_for_all_500_cells(nb301):
    _check_counts(nb301)


def test_macro_skeleton_reduces_at_one_and_two_thirds_of_the_depth():
    net = darts_network(DARTS_V2, channels=4, layers=8)
    assert [i for i, cell in enumerate(net.cells) if cell.reduction] == [2, 5]
    # the cell after a reduction reaches c_{k-2} through a FactorizedReduce
    after = [i for i, cell in enumerate(net.cells) if isinstance(cell.preprocess0, FactorizedReduce)]
    assert after == [3, 6]
    x = torch.randn(2, 3, 32, 32)
    assert net.features(x).shape == (2, 4 * 16, 8, 8)
    assert net(x).shape == (2, 10)


def test_any_input_size_and_width():
    a = DARTS.from_genotype(DARTS_V2)
    net = DARTS.network(a, num_classes=5, channels=6, layers=3, in_channels=1)
    # odd sizes too: the strided skip pads before its offset conv
    assert net(torch.randn(2, 1, 15, 15)).shape == (2, 5)


def test_darts_evaluation_variant_has_the_published_size():
    # DARTS (second order), 20 cells of C = 36: 3.3M parameters (Liu et al., 2019, Table 1)
    with torch.device("meta"):
        net = darts_network(
            DARTS_V2, channels=36, layers=20, affine=True, pool_bn=False
        )
    assert round(_params(net) / 1e6, 1) == 3.3
    with torch.device("meta"):
        naslib = darts_network(DARTS_V2, channels=36, layers=20)
    assert _params(naslib) < _params(net)  # NASLib's cell ops have no BN affine parameters


def test_auxiliary_head_is_extra_and_left_out_of_the_counts():
    a = DARTS.from_genotype(DARTS_V2)
    torch.manual_seed(0)
    plain = DARTS.network(a, channels=4, layers=5)
    torch.manual_seed(0)
    aux = DARTS.network(a, channels=4, layers=5, auxiliary=True)
    assert isinstance(aux.auxiliary, AuxiliaryHead)
    assert _params(aux) == _params(plain) + _params(aux.auxiliary)
    assert count_flops(aux, (3, 32, 32)) == count_flops(plain, (3, 32, 32))
    x = torch.randn(2, 3, 32, 32)
    aux.load_state_dict(plain.state_dict(), strict=False)
    logits, aux_logits = aux.forward_with_auxiliary(x)
    assert aux_logits.shape == (2, 10)
    torch.testing.assert_close(logits, plain(x))
    with pytest.raises(ValueError, match="no auxiliary head"):
        plain.forward_with_auxiliary(x)


def test_auxiliary_head_needs_a_large_enough_map():
    a = DARTS.from_genotype(DARTS_V2)
    with pytest.raises(ConfigError, match="input_size >= 17"):
        DARTS.network(a, channels=4, layers=5, input_size=16, auxiliary=True)
    net = DARTS.network(a, channels=4, layers=5, input_size=64, auxiliary=True)
    assert net.forward_with_auxiliary(torch.randn(2, 3, 64, 64))[1].shape == (2, 10)


def test_cell_wiring_follows_the_genotype():
    cell = DARTSCell(
        DARTS_V2.normal, [2, 3, 4, 5], 12, 12, 4, False, False, affine=False, pool_bn=True
    )
    assert cell.inputs == (0, 1, 0, 1, 1, 0, 0, 2)
    assert isinstance(cell.ops[5], torch.nn.Identity)
    out = cell(torch.randn(1, 12, 8, 8), torch.randn(1, 12, 8, 8))
    assert out.shape == (1, 16, 8, 8)
