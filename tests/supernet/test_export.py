"""`sned export`: a front member becomes a standalone subnet that `sned sample` can load."""

import json

import numpy as np
import pytest
import torch

from sned.search.cli import main
from sned.supernet.export import export_subnet, load_exported
from sned.supernet.space import arch_id


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, checkpoint_writer):
    """A checkpoint of a randomly perturbed tiny supernet, written by the training code's own saver."""
    run = tmp_path_factory.mktemp("run")
    return run, checkpoint_writer(run)


def test_export_round_trip_equals_supernet(run_dir, tmp_path):
    run, net = run_dir
    arch = net.space.sample(np.random.default_rng(0), res=32)
    out = export_subnet(run, arch, tmp_path / "export")
    subnet, config = load_exported(out)
    assert config["arch_id"] == arch_id(arch) and config["params"] == net.space.params(arch)[0]
    x, t = torch.randn(1, 3, 8, 32, 32), torch.tensor([300.0])
    with torch.no_grad():
        assert torch.allclose(subnet(x, t), net(x, t, arch), atol=1e-5)
    with pytest.raises(ValueError, match="this exported subnet is arch"):
        subnet(x, t, net.space.largest(32))


def test_export_cli_from_pareto_json_then_sample(run_dir, tmp_path, capsys):
    run, net = run_dir
    arch = net.space.smallest(32)
    pareto = tmp_path / "pareto.json"
    pareto.write_text(json.dumps({"fronts": {"32": [{"arch_id": arch_id(arch), "arch": arch, "latency_ms": 5.0}]}}))
    out = tmp_path / "sub"
    assert main(["export", str(pareto), "--id", arch_id(arch), "--ckpt", str(run), "--out", str(out)]) == 0
    assert main(["sample", str(out), "--n", "1", "--steps", "2", "--out", str(tmp_path / "videos")]) == 0
    assert sorted(p.suffix for p in (tmp_path / "videos").iterdir() if p.name.startswith("sample-")) == [".gif", ".mp4"]
    capsys.readouterr()
    assert main(["export", str(pareto), "--id", "nope", "--ckpt", str(run), "--out", str(out)]) == 2
    assert "is not on the fronts" in capsys.readouterr().err
