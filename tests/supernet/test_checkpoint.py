"""Checkpoints: safetensors + JSON round trip, atomic folders, pruning, validation of corrupt files."""

import json
import random

import numpy as np
import pytest
import torch

from sned.supernet import Supernet
from sned.supernet.base.errors import UserError
from sned.supernet.checkpoint import (
    bundle_weights,
    list_checkpoints,
    load_supernet,
    optimizer_state,
    read_state,
    resolve_checkpoint,
    save_checkpoint,
    set_rng_states,
)
from sned.supernet.space import load_space
from sned.supernet.train import EMA

SPACE = load_space("tiny")


def _state():
    return {"experiment": SPACE.name, "space": SPACE.to_dict(), "space_hash": SPACE.hash, "config": {"lr": 1e-3},
            "seed": 0, "sampler": {"kind": "uniform"}, "data": {"position": 5}}


@pytest.fixture(scope="module")
def trained():
    """A supernet after two AdamW steps (so the optimizer has state) and its EMA."""
    torch.manual_seed(0)
    net = Supernet(SPACE)
    ema = EMA(net, 0.5)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    arch = SPACE.smallest(32)
    for step in range(2):
        opt.zero_grad(set_to_none=True)
        net(torch.randn(1, 3, 8, 32, 32), torch.tensor([5.0]), arch).square().mean().backward()
        opt.step()
        ema.update(net, step)
    return net, ema, opt


def test_round_trip(trained, tmp_path):
    net, ema, opt = trained
    torch.manual_seed(123), np.random.seed(7), random.seed(9)
    expected_rng = (torch.rand(3), np.random.rand(), random.random())
    torch.manual_seed(123), np.random.seed(7), random.seed(9)
    ckpt = save_checkpoint(tmp_path, 2, net, ema.shadow, opt, _state())
    assert ckpt.name == "step-00000002" and sorted(p.name for p in ckpt.iterdir()) == [
        "optimizer.safetensors", "state.json", "weights.safetensors"]
    state = read_state(ckpt)
    assert state["step"] == 2 and state["data"] == {"position": 5} and state["space_hash"] == SPACE.hash
    raw, info = load_supernet(tmp_path, ema=False)
    assert all(torch.equal(a, b) for a, b in zip(raw.state_dict().values(), net.state_dict().values(), strict=True))
    smooth, info_ema = load_supernet(ckpt / "state.json")
    assert all(torch.equal(a, b) for a, b in zip(smooth.state_dict().values(), ema.shadow.state_dict().values(),
                                                  strict=True))
    assert info["sha256"] == info_ema["sha256"] == state["files"]["weights.safetensors"] and info["step"] == 2
    fresh = torch.optim.AdamW(raw.parameters(), lr=1e-3)
    fresh.load_state_dict(optimizer_state(ckpt, state))
    got_state, want_state = fresh.state_dict()["state"], opt.state_dict()["state"]
    assert sorted(got_state) == sorted(want_state) and want_state
    for index, want in want_state.items():
        assert all(torch.equal(got_state[index][k], want[k]) for k in ("step", "exp_avg", "exp_avg_sq"))
    assert fresh.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    set_rng_states(state["rng"])
    got = (torch.rand(3), np.random.rand(), random.random())
    assert torch.equal(got[0], expected_rng[0]) and got[1:] == expected_rng[1:]


def test_atomic_folders_and_pruning(trained, tmp_path):
    net, ema, opt = trained
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, net, ema.shadow, opt, _state(), keep=2)
    (tmp_path / "checkpoints" / ".step-00000004.abc").mkdir()  # a killed writer's leftover: ignored
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    assert resolve_checkpoint(tmp_path).name == "step-00000003"
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if p.name.endswith(".json")]


def test_corrupt_checkpoints_are_one_line_errors(trained, tmp_path):
    net, ema, opt = trained
    ckpt = save_checkpoint(tmp_path, 1, net, ema.shadow, opt, _state())
    weights = ckpt / "weights.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-10])
    with pytest.raises(UserError, match="corrupt checkpoint .*weights.safetensors does not match its recorded sha256"):
        load_supernet(ckpt)
    weights.write_bytes(good)
    state = json.loads((ckpt / "state.json").read_text())
    (ckpt / "state.json").write_text(json.dumps(state | {"space_hash": "0" * 16}))
    with pytest.raises(UserError, match="space hash"):
        load_supernet(ckpt)
    (ckpt / "state.json").write_text("{not json")
    with pytest.raises(UserError, match="state.json is not valid JSON"):
        load_supernet(ckpt)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_supernet(tmp_path / "missing")
    with pytest.raises(UserError, match="no checkpoint in"):
        load_supernet(tmp_path / "checkpoints")


def test_bundled_weights_load_without_optimizer_state(trained, tmp_path):
    net, ema, opt = trained
    ckpt = save_checkpoint(tmp_path / "run", 2, net, ema.shadow, opt, _state())
    folder = bundle_weights(ckpt, tmp_path / "bundle", provenance={"command": "test", "steps": 2})
    assert sorted(p.name for p in folder.iterdir()) == ["state.json", "weights.safetensors"]
    state = read_state(folder)
    assert state["weights_only"] and state["dtype"] == "fp16" and state["provenance"]["steps"] == 2
    loaded, info = load_supernet(folder)
    assert info["step"] == 2 and info["sha256"] == state["files"]["weights.safetensors"]
    for (name, a), b in zip(ema.shadow.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(b, a.half().float()), name  # fp16-rounded EMA weights
    with pytest.raises(UserError, match="only the EMA weights"):
        load_supernet(folder, ema=False)
    assert (folder / "weights.safetensors").stat().st_size < 0.6 * (ckpt / "weights.safetensors").stat().st_size / 2


def test_bundled_experiment_names_resolve(tmp_path, monkeypatch):
    from sned.supernet.checkpoint import bundled_supernet

    monkeypatch.chdir(tmp_path)  # no folder called "tiny" here
    folder = bundled_supernet("tiny")
    assert folder is not None and resolve_checkpoint("tiny") == folder
    assert bundled_supernet("../etc") is None
    with pytest.raises(UserError, match="checkpoint not found"):
        resolve_checkpoint("no-such-experiment")
