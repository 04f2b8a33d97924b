from pathlib import Path

import pytest

SHARED_BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED_BENCHMARKS.is_dir():
        pytest.fail(f"the shared benchmark tables are missing: expected {SHARED_BENCHMARKS}")
    return SHARED_BENCHMARKS
