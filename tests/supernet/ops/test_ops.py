"""Every elastic op: the max spec is the dense op, extract(spec) equals op(x, spec), gradients stay in the slice."""

import pytest
import torch
import torch.nn.functional as F

from sned.supernet.ops import ElasticConv3d, ElasticGroupNorm, ElasticLinear, ElasticRelativePositionBias
from sned.supernet.ops.conv import conv3d

CASES = [
    # (op, max spec, small spec, input shape for the small spec)
    (lambda: ElasticConv3d((64,), 96, (1, 3, 3), padding=(0, 1, 1)), ((64,), 96), ((32,), 64), (2, 32, 4, 8, 8)),
    (lambda: ElasticConv3d((64,), 64, (3, 1, 1), padding=(1, 0, 0)), ((64,), 64), ((32,), 32), (2, 32, 4, 8, 8)),
    (lambda: ElasticConv3d((64, 32), 64, (1, 3, 3), padding=(0, 1, 1)), ((64, 32), 64), ((32, 32), 32),
     (1, 64, 4, 8, 8)),
    (lambda: ElasticConv3d((32,), 32, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)), ((32,), 32), ((32,), 32),
     (1, 32, 2, 8, 8)),
    (lambda: ElasticGroupNorm((64, 32)), (64, 32), (32, 32), (2, 64, 4, 4, 4)),
    (lambda: ElasticLinear(64, (64, 64, 64), bias=False), (64, (64, 64, 64)), (32, (32, 32, 32)), (3, 5, 32)),
    (lambda: ElasticLinear(128, (64, 64)), (128, (64, 64)), (128, (32, 32)), (3, 128)),
]


def _perturbed(make):
    torch.manual_seed(0)
    op = make()
    with torch.no_grad():
        for p in op.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return op


@pytest.mark.parametrize("make, max_spec, spec, shape", CASES)
def test_extract_equals_elastic_call(make, max_spec, spec, shape):
    op = _perturbed(make)
    x = torch.randn(shape)
    assert torch.allclose(op.extract(spec)(x), op(x, spec=spec), atol=1e-6)


@pytest.mark.parametrize("make, max_spec, spec, shape", CASES)
def test_max_spec_is_the_dense_op(make, max_spec, spec, shape):
    op = _perturbed(make)
    full = op.extract(max_spec)
    assert sum(p.numel() for p in full.parameters()) == sum(p.numel() for p in op.parameters())
    if isinstance(op, ElasticLinear):
        x = torch.randn(*shape[:-1], op.in_features)
    else:
        x = torch.randn(shape[0], sum(op.in_segments if isinstance(op, ElasticConv3d) else op.segments), *shape[2:])
    if isinstance(op, ElasticConv3d):  # the dense reference: plain conv3d on the full weights
        dense = F.conv3d(x, op.weight, op.bias, op.stride, op.padding)
    elif isinstance(op, ElasticGroupNorm):
        dense = F.group_norm(x, 32, op.weight, op.bias, op.eps)
    else:
        dense = F.linear(x, op.weight, op.bias)
    assert torch.allclose(op(x, spec=max_spec), dense, atol=1e-4)


@pytest.mark.parametrize("make, max_spec, spec, shape", CASES)
def test_gradients_touch_only_the_active_slice(make, max_spec, spec, shape):
    op = _perturbed(make)
    op(torch.randn(shape), spec=spec).square().sum().backward()
    touched = op.active_weights(spec)[0]
    assert op.weight.grad.abs().sum() > 0
    # every entry with a gradient is one the slice reads: nothing leaks outside it
    grad = op.weight.grad.clone()
    op.weight.grad.zero_()
    op.active_weights(spec)[0].sum().backward()
    mask = op.weight.grad != 0
    assert mask.sum() == touched.numel()
    assert (grad[~mask] == 0).all()


def test_factorised_conv_equals_conv3d():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 5, 6, 6)
    for kernel, padding, stride in [((1, 3, 3), (0, 1, 1), (1, 1, 1)), ((3, 1, 1), (1, 0, 0), (1, 1, 1)),
                                    ((1, 3, 3), (0, 1, 1), (1, 2, 2)), ((1, 1, 1), (0, 0, 0), (1, 1, 1))]:
        w, b = torch.randn(4, 8, *kernel), torch.randn(4)
        assert torch.allclose(conv3d(x, w, b, stride, padding), F.conv3d(x, w, b, stride, padding), atol=1e-5)


def test_relative_position_bias_slices_heads():
    bias = ElasticRelativePositionBias(4, 5)
    with torch.no_grad():
        bias.table.copy_(torch.randn_like(bias.table))
    out = bias(spec=2)
    assert out.shape == (2, 5, 5)
    assert torch.equal(out[1, 0, 3], bias.table[3 - 0 + 4, 1])  # offset j - i = 3
    assert torch.equal(bias.extract(2)(), out)
