"""``sned sample`` and ``generate``: DDIM from any subnet and resolution, common random numbers, files."""

import json

import numpy as np
import pytest
import torch

from sned.search.cli import main as sned
from sned.supernet import Supernet
from sned.supernet.checkpoint import load_supernet, save_checkpoint
from sned.supernet.sample import generate, video_generators
from sned.supernet.space import load_space
from sned.supernet.video_io import read_video


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny checkpoint with perturbed weights (an untrained supernet predicts exactly zero)."""
    space = load_space("tiny")
    torch.manual_seed(0)
    net = Supernet(space)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    out = tmp_path_factory.mktemp("sample")
    state = {"experiment": space.name, "space": space.to_dict(), "space_hash": space.hash, "seed": 0,
             "config": {"prediction": "v"}, "sample_config": {"steps": 2, "n": 1}}
    save_checkpoint(out, 1, net, net, torch.optim.AdamW(net.parameters()), state)
    return out


@pytest.fixture(scope="module")
def loaded(run_dir):
    return load_supernet(run_dir)


def test_generate_is_seeded_per_video_whatever_the_batch(loaded):
    net, _ = loaded
    arch = net.space.smallest(32)
    together = generate(net, arch, n=3, steps=2, seed=4, batch_size=3)
    assert together.shape == (3, 3, 8, 32, 32) and together.abs().max() <= 1
    apart = generate(net, arch, n=3, steps=2, seed=4, batch_size=1)
    assert torch.allclose(together, apart, atol=1e-5)
    assert not torch.allclose(together[0], together[1])
    assert not torch.allclose(generate(net, arch, n=1, steps=2, seed=5), together[:1])
    noisy = generate(net, arch, n=2, steps=3, seed=4, eta=1.0)
    assert torch.equal(noisy, generate(net, arch, n=2, steps=3, seed=4, eta=1.0))
    # common random numbers: every subnet at a resolution starts from the same noise
    first = [g.initial_seed() for g in video_generators(4, 3)]
    assert first == [g.initial_seed() for g in video_generators(4, 3)] and len(set(first)) == 3


@pytest.mark.parametrize("res", [32, 64, 128])
def test_cli_writes_readable_videos_for_largest_and_smallest(run_dir, tmp_path, capsys, res):
    for which in ("--largest", "--smallest"):
        out = tmp_path / which[2:]
        assert sned(["sample", str(run_dir), which, "--res", str(res), "--n", "1", "--steps", "2",
                     "--out", str(out), "--device", "cpu"]) == 0
        frames = read_video(out / "sample-000.mp4")
        assert frames.shape == (8, res, res, 3) and frames.dtype == np.uint8
        from PIL import Image

        with Image.open(out / "sample-000.gif") as gif:
            assert gif.size == (res, res) and gif.n_frames == 8
        meta = json.loads((out / "samples.json").read_text())
        assert meta["arch"]["res"] == res and meta["steps"] == 2 and len(meta["checkpoint_sha256"]) == 64
    assert "1 videos of" in capsys.readouterr().out


def test_arch_json_and_bad_input(run_dir, tmp_path, capsys):
    space = load_space("tiny")
    arch = space.sample(np.random.default_rng(0), res=64)
    assert sned(["sample", str(run_dir), "--arch", json.dumps(arch), "--res", "32", "--n", "1", "--steps", "1",
                 "--out", str(tmp_path / "a")]) == 0
    assert json.loads((tmp_path / "a" / "samples.json").read_text())["arch"]["res"] == 32
    capsys.readouterr()
    assert sned(["sample", str(run_dir), "--arch", "{bad", "--out", str(tmp_path / "b")]) == 2
    assert sned(["sample", str(run_dir), "--largest", "--res", "48", "--out", str(tmp_path / "b")]) == 2
    assert sned(["sample", str(tmp_path / "nothing"), "--largest", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "not a JSON arch" in err[0] and "48" in err[1] and "not found" in err[2]
    assert not (tmp_path / "b").exists()


def test_guidance_mixes_the_conditional_and_the_null_prediction():
    from sned.supernet.space import SearchSpace, load_experiment, parse_space_spec

    section = dict(load_experiment("tiny")[0]["space"]) | {"classes": 3, "resolutions": [32]}
    space = SearchSpace(parse_space_spec(section, "conditional"))
    torch.manual_seed(0)
    net = Supernet(space).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    arch = space.smallest(32)
    null = [3, 3, 3, 3]
    # w = 0 is the unconditional model, w = 1 the conditional one; the default labels cycle the classes
    unconditional = generate(net, arch, 4, 2, seed=1, labels=null)
    assert torch.allclose(generate(net, arch, 4, 2, seed=1, guidance=0.0), unconditional, atol=1e-5)
    cycled = generate(net, arch, 4, 2, seed=1)
    assert torch.allclose(cycled, generate(net, arch, 4, 2, seed=1, labels=[0, 1, 2, 0]), atol=1e-6)
    assert not torch.allclose(cycled, unconditional, atol=1e-4)
    guided = generate(net, arch, 4, 2, seed=1, guidance=3.0)
    assert not torch.allclose(guided, cycled, atol=1e-4)
    with pytest.raises(ValueError, match="labels"):
        generate(net, arch, 4, 2, seed=1, labels=[0, 1, 2, 4])


def test_class_flag_errors_are_one_line(tmp_path, capsys):
    from sned.supernet.space import SearchSpace, load_experiment, parse_space_spec

    section = dict(load_experiment("tiny")[0]["space"]) | {"classes": 0, "resolutions": [32]}
    space = SearchSpace(parse_space_spec(section, "unconditional"))
    net = Supernet(space)
    state = {"experiment": "tiny", "space": space.to_dict(), "space_hash": space.hash, "seed": 0,
             "config": {"prediction": "v"}}
    save_checkpoint(tmp_path / "run", 1, net, net, torch.optim.AdamW(net.parameters()), state)
    # an unconditional checkpoint: --class and --guidance are refused with exit code 2
    for flag in (["--class", "SlidingStripes"], ["--guidance", "2"]):
        code = sned(["sample", str(tmp_path / "run"), "--largest", "--res", "32", "--n", "1", "--steps", "1",
                     "--out", str(tmp_path / "x"), *flag])
        err = capsys.readouterr().err
        assert code == 2 and "unconditional" in err and len(err.strip().splitlines()) == 1, err


def test_class_labels_names_and_errors():
    from sned.supernet.base.errors import UserError
    from sned.supernet.sample import class_labels

    names = ["A", "B", "C"]
    assert class_labels(3, names, 4) == ([0, 1, 2, 0], ["A", "B", "C", "A"])
    assert class_labels(3, names, 2, "C") == ([2, 2], ["C", "C"])
    assert class_labels(0, [], 2) == (None, [])
    with pytest.raises(UserError, match="valid: A, B, C"):
        class_labels(3, names, 2, "D")
