"""Shared test settings: small thread counts keep the suite steady on a 2-core machine."""

import os

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


def save_perturbed_checkpoint(run_dir, seed: int = 0):
    """A tiny supernet with randomly perturbed weights (zero-initialised residual branches would make
    every subnet alike), saved by the training code's own checkpoint writer. Returns the supernet."""
    import torch

    from sned.supernet.checkpoint import save_checkpoint
    from sned.supernet.model import Supernet
    from sned.supernet.space import load_space

    torch.manual_seed(seed)
    space = load_space("tiny")
    net = Supernet(space)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {"experiment": "tiny", "space": space.to_dict(), "space_hash": space.hash, "config": {"prediction": "v"}}
    save_checkpoint(run_dir, 1, net, net, torch.optim.AdamW(net.parameters()), state)
    return net


@pytest.fixture(scope="session")
def checkpoint_writer():
    """:func:`save_perturbed_checkpoint`, for tests that need a real checkpoint folder."""
    return save_perturbed_checkpoint
