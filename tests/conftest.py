"""Shared test setup: offline hub access, a quiet CPU JAX, and the path of the shared kit."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = Path(__file__).resolve().parents[1]
KIT = Path(os.environ.get("SEMBRIDGE_KIT", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def kit() -> Path:
    """The shared kit (models + Korean data) that CI places beside the checkout."""
    if not (KIT / "assets" / "splade-tiny-en").is_dir():
        raise FileNotFoundError(f"the shared kit is missing at {KIT}; set SEMBRIDGE_KIT to its path")
    return KIT


@pytest.fixture(scope="session")
def gcs_server():
    """One local GCS server per test process (see tests/gcs_emulator.py)."""
    from gcs_emulator import GCSEmulator

    with GCSEmulator() as server:
        yield server


@pytest.fixture
def gcs(gcs_server, monkeypatch):
    """The local GCS server, with this process's clients pointed at it."""
    for key, value in gcs_server.env.items():
        monkeypatch.setenv(key, value)
    return gcs_server
