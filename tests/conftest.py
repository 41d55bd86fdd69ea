"""Shared test set-up: tests that need WordNet skip locally without it, but fail in CI."""

import os

import pytest


def _wordnet_available() -> bool:
    from hafcls.errors import HafclsError
    from hafcls.hierarchy.sources.wordnet import load_wordnet

    try:
        load_wordnet()
    except HafclsError:
        return False
    return True


@pytest.fixture(scope="session")
def wordnet_data():
    """Skip when WordNet is missing, except in CI (CI=true), where .ci/run installs it."""
    if not _wordnet_available():
        if os.environ.get("CI"):
            pytest.fail("WordNet is missing in CI: .ci/run should have installed it")
        pytest.skip("WordNet 3.0 not installed (apt-get install wordnet-base wordnet-sense-index)")


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread for the whole suite (session scope, so module-scoped training runs
    get it too): tiny models gain nothing from more threads, oversubscribed OpenMP threads made
    a tiny run ~10x slower on a busy 2-core machine, and the fault-injection subprocesses
    (OMP_NUM_THREADS=1) must match in-process runs bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
