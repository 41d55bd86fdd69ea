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


@pytest.fixture
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads and lose a lot on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
