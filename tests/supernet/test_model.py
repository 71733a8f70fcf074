"""The elastic UNet: extraction equals slicing, params and FLOPs match the analytic counts."""

import numpy as np
import pytest
import torch

from sned.supernet import Supernet
from sned.supernet.blocks import module_key
from sned.supernet.space import load_space


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    net = Supernet(load_space("tiny")).eval()
    with torch.no_grad():  # leave the zero-initialised residual branches: they would hide slicing bugs
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.mark.parametrize("res", [32, 64, 128])
def test_extract_equals_supernet_forward(tiny_net, res):
    space, rng = tiny_net.space, np.random.default_rng(res)
    archs = [space.largest(res), space.smallest(res), *(space.sample(rng, res=res) for _ in range(3))]
    x, t = torch.randn(2, 3, 8, res, res), torch.tensor([5.0, 800.0])
    for arch in archs:
        with torch.no_grad():
            expected = tiny_net(x, t, arch)
            got = tiny_net.extract(arch)(x, t)
            bound = tiny_net.bind(arch)(x, t)
        assert expected.shape == x.shape
        assert torch.allclose(got, expected, atol=1e-5, rtol=0), arch
        assert torch.equal(bound, expected)
    with torch.no_grad():  # and the archs really differ
        assert not torch.equal(tiny_net(x, t, space.smallest(res)), tiny_net(x, t, space.largest(res)))


@pytest.mark.parametrize("name", ["tiny", "pixel-1.6b", "latent"])
def test_params_equal_extracted_parameter_count(name):
    space = load_space(name)
    with torch.device("meta"):  # paper scale without memory
        net = Supernet(space)
    rng = np.random.default_rng(0)
    archs = [space.largest(space.resolutions[-1]), space.smallest(space.resolutions[0])]
    archs += [space.sample(rng) for _ in range(4)]
    counts = [sum(p.numel() for p in net.extract(a).parameters()) for a in archs]
    assert counts == space.params(archs).tolist()


def test_gradients_touch_only_active_slices(tiny_net):
    space = tiny_net.space
    arch = space.decode(space.sample_genes(np.random.default_rng(3), 1, res=32))[0]
    arch["stages"][2] = {"width": 96, "depth": 1, "attn": [1]}
    tiny_net.zero_grad(set_to_none=True)
    tiny_net(torch.randn(1, 3, 8, 32, 32), torch.tensor([10.0]), arch).square().mean().backward()
    plan = tiny_net.plan(arch)
    # skipped blocks get no gradient at all
    skipped = [n for n in ("down2.block1.res", "up2.block1.res", "down2.block1.attn") if n not in plan]
    assert skipped
    for name in skipped:
        assert all(p.grad is None for p in tiny_net.blocks[module_key(name)].parameters())
    # inside an active block only the active slice moves: stage 2 at width 96 of 128
    conv = tiny_net.blocks["down2_block0_res"].conv2
    assert conv.weight.grad[:96, :96].abs().sum() > 0
    assert conv.weight.grad[96:].abs().sum() == 0 and conv.weight.grad[:, 96:].abs().sum() == 0
    qkv = tiny_net.blocks["down2_block0_attn"].spatial_qkv.weight.grad  # q | k | v, 128 rows each
    for seg in range(3):
        assert qkv[seg * 128: seg * 128 + 96, :96].abs().sum() > 0
        assert qkv[seg * 128 + 96: (seg + 1) * 128].abs().sum() == 0
    # decoder block 0 reads [up (stage-2 width 96 of 128) | skip (stage-1 width)], each sliced separately
    w1 = arch["stages"][1]["width"]
    conv1 = tiny_net.blocks["up1_block0_res"].conv1.weight.grad
    assert conv1[:, 96:128].abs().sum() == 0 and conv1[:, 128 + w1:].abs().sum() == 0
    assert conv1[:w1, :96].abs().sum() > 0 and conv1[:w1, 128:128 + w1].abs().sum() > 0


def test_bad_input_shape_is_a_clear_error(tiny_net):
    arch = tiny_net.space.smallest(64)
    with pytest.raises(ValueError, match=r"expected input \(b, c, f, h, w\) with \(c, f, h, w\) = \(3, 8, 64, 64\)"):
        tiny_net(torch.randn(1, 3, 8, 32, 32), torch.tensor([1.0]), arch)


def _fvcore_flops(module, inputs):
    from fvcore.nn import FlopCountAnalysis

    def sdpa(inputs, outputs):  # fvcore drops scaled_dot_product_attention silently
        q, k = inputs[0].type().sizes(), inputs[1].type().sizes()
        return 2 * int(np.prod(q[:-1])) * k[-2] * q[-1]  # QK^T and AV, in MACs

    analysis = FlopCountAnalysis(module, inputs).set_op_handle("aten::scaled_dot_product_attention", sdpa)
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    assert any("scaled_dot_product_attention" in k for k in by_op), by_op  # the handle was used
    return 2 * sum(v for k, v in by_op.items() if "norm" not in k)  # the analytic count leaves norms out


@pytest.mark.parametrize("res", [32, 128])
def test_analytic_flops_match_fvcore(tiny_net, res):
    space, rng = tiny_net.space, np.random.default_rng(1)
    for arch in [space.largest(res), space.smallest(res), space.sample(rng, res=res)]:
        measured = _fvcore_flops(tiny_net.extract(arch), (torch.randn(1, 3, 8, res, res), torch.tensor([1.0])))
        analytic = space.flops(arch)[0]
        assert abs(analytic - measured) / measured < 0.02, (arch, analytic, measured)


def _conditional(classes: int = 6):
    from sned.supernet.space import SearchSpace, load_experiment, parse_space_spec

    section = dict(load_experiment("tiny")[0]["space"]) | {"classes": classes, "resolutions": [32]}
    return SearchSpace(parse_space_spec(section, "conditional"))


def test_class_labels_condition_every_subnet_and_survive_extraction():
    space = _conditional()
    torch.manual_seed(0)
    net = Supernet(space).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(3, 3, 8, 32, 32), torch.tensor([5.0, 400.0, 800.0])
    labels, null = torch.tensor([0, 3, 5]), torch.full((3,), space.spec.classes)
    for arch in (space.largest(32), space.smallest(32)):
        with torch.no_grad():
            conditional = net(x, t, arch, labels=labels)
            assert torch.allclose(net.extract(arch)(x, t, labels=labels), conditional, atol=1e-5, rtol=0)
            assert torch.equal(net.bind(arch)(x, t, labels=labels), conditional)
            assert torch.equal(net(x, t, arch), net(x, t, arch, labels=null))  # no labels: the null label
            assert not torch.allclose(conditional, net(x, t, arch, labels=null))
    # the class embedding (with its null row) is a fixed part: counted once, exactly
    counts = [sum(p.numel() for p in net.extract(a).parameters()) for a in (space.largest(32), space.smallest(32))]
    assert counts == space.params([space.largest(32), space.smallest(32)]).tolist()
    assert space.fixed_params() - _conditional(0).fixed_params() == 7 * space.spec.time_embed_dim


def test_labels_are_refused_by_an_unconditional_space_and_checked_for_shape():
    plain = Supernet(_conditional(0))
    x, t = torch.randn(2, 3, 8, 32, 32), torch.tensor([5.0, 400.0])
    with pytest.raises(ValueError, match="unconditional"):
        plain(x, t, plain.space.largest(32), labels=torch.tensor([0, 1]))
    conditional = Supernet(_conditional())
    with pytest.raises(ValueError, match="class indices"):
        conditional(x, t, conditional.space.largest(32), labels=torch.tensor([0, 1, 2]))


def test_classes_change_the_space_hash_only_when_set():
    assert "classes" not in _conditional(0).to_dict()
    assert _conditional(6).to_dict()["classes"] == 6 and _conditional(6).hash != _conditional(0).hash


def _variant_net(**options):
    """tiny's space at 32 px with extra ``space`` options, its weights (zero-initialised ones too) perturbed."""
    from sned.supernet.space import SearchSpace, load_experiment, parse_space_spec

    section = dict(load_experiment("tiny")[0]["space"]) | options | {"resolutions": [32]}
    torch.manual_seed(0)
    net = Supernet(SearchSpace(parse_space_spec(section, "variant"))).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _assert_exact(net, seed):
    """The largest, the smallest and a random subnet at 32 px: extraction, params and FLOPs are exact."""
    space, rng = net.space, np.random.default_rng(seed)
    x, t = torch.randn(2, 3, 8, 32, 32), torch.tensor([5.0, 800.0])
    for arch in [space.largest(32), space.smallest(32), space.sample(rng, res=32)]:
        with torch.no_grad():
            assert torch.allclose(net.extract(arch)(x, t), net(x, t, arch), atol=1e-5, rtol=0), arch
        assert sum(p.numel() for p in net.extract(arch).parameters()) == space.params([arch])[0]
        measured = _fvcore_flops(net.extract(arch), (x[:1], t[:1]))
        assert abs(space.flops(arch)[0] - measured) / measured < 0.02, arch
    return space, x, t


def test_global_gate_is_exact_in_extraction_params_and_flops():
    net = _variant_net(global_gate=True)
    space, x, t = _assert_exact(net, seed=2)
    # the gate is a real path: zeroing it changes the output; ungated spaces keep their hash
    arch = space.largest(32)
    with torch.no_grad():
        before = net(x, t, arch)
        for block in net.blocks.values():
            if getattr(block, "gate", None) is not None:
                block.gate.weight.zero_()
        assert not torch.allclose(before, net(x, t, arch))
    assert space.hash != load_space("tiny").hash and "global_gate" not in load_space("tiny").to_dict()



def test_position_features_are_exact_in_extraction_params_and_flops():
    from sned.supernet.blocks.modules import position_features

    net = _variant_net(position_frequencies=3)
    space, x, t = _assert_exact(net, seed=3)
    # 2K(K+1) wave vectors, cos then sin, in frame units: cell (row 1, col 2) of a 4x4 grid sits at u = (0.625, 0.375)
    # (on a 4x4 grid, frequencies 2 and 3 on either axis would alias: those features are zero)
    features = position_features(3, 4, 4, dtype=torch.float64)
    assert features.shape == (4, 4, 48)
    u = np.array([0.625, 0.375])
    k = np.array([(kx, ky) for kx in range(4) for ky in range(-3, 4) if kx > 0 or ky > 0])
    resolved = (np.abs(k) < 2).all(axis=1)
    assert resolved.sum() == 4  # (0, 1), (1, -1), (1, 0), (1, 1)
    np.testing.assert_allclose(features[1, 2, :24].numpy(), np.cos(2 * np.pi * k @ u) * resolved, atol=1e-12)
    np.testing.assert_allclose(features[1, 2, 24:].numpy(), np.sin(2 * np.pi * k @ u) * resolved, atol=1e-12)
    # the projection is a real path; spaces without it keep their hash
    arch = space.largest(32)
    with torch.no_grad():
        before = net(x, t, arch)
        net.blocks["stem"].position.weight.zero_()
        assert not torch.allclose(before, net(x, t, arch))
    assert space.hash != load_space("tiny").hash and "position_frequencies" not in load_space("tiny").to_dict()
