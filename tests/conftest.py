from pathlib import Path

import pytest

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED_BENCHMARKS.is_dir():
        pytest.fail(f"the shared benchmark tables are missing: expected {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests train tiny networks: one thread is fastest and keeps timings steady on 2 shared cores."""
    import torch

    torch.set_num_threads(1)
    yield
