"""Block kinds: every registered kind is exact, and a kind of one's own plugs in with no other change.

The second half is the "bring your own block" example of the README, whole: an elastic token MLP
(LayerNorm + MLP on every space-time position of a stage) written in this one file, registered,
named by a YAML, and then counted, extracted and timed by the unchanged space, supernet and latency
table code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sned.predictors.latency import BlockKey, LatencyTable, enumerate_keys, unpack_key
from sned.supernet import Supernet
from sned.supernet.blocks import (
    BUILTIN_KINDS,
    BlockKind,
    LatencyProbe,
    Slot,
    get_kind,
    kind_names,
    module_key,
    register_kind,
    registry,
    unregister_kind,
)
from sned.supernet.blocks.modules import ElasticBlock, Ops
from sned.supernet.ops import ElasticLinear
from sned.supernet.space import SpaceError, load_space, parse_space_spec

# ----------------------------------------------------------------------------- a kind of one's own


class ElasticLayerNorm(nn.Module):
    """LayerNorm over the channels of ``(..., c)`` tokens, affine sliced to the active width."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, spec: int) -> torch.Tensor:
        return F.layer_norm(x, (spec,), self.weight[:spec], self.bias[:spec], self.eps)

    def extract(self, spec: int) -> nn.LayerNorm:
        norm = nn.LayerNorm(spec, eps=self.eps, device=self.weight.device, dtype=self.weight.dtype)
        norm.weight.data.copy_(self.weight[:spec].detach())
        norm.bias.data.copy_(self.bias[:spec].detach())
        return norm


class TokenMLP(ElasticBlock):
    """``x + fc2(gelu(fc1(norm(x))))`` on every position's channels (hidden width ``ratio * c``). Spec: ``c``."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.ratio = ratio
        self.norm = ElasticLayerNorm(channels)
        self.fc1 = ElasticLinear(channels, (ratio * channels,))
        self.fc2 = ElasticLinear(ratio * channels, (channels,))

    def child_specs(self, c: int) -> dict:
        return {"norm": c, "fc1": (c, (self.ratio * c,)), "fc2": (self.ratio * c, (c,))}

    @staticmethod
    def compute(ops: Ops, x: torch.Tensor, use_temporal: bool = True) -> torch.Tensor:
        _, _, f, h, _ = x.shape  # positions are independent, so use_temporal changes nothing
        tokens = rearrange(x, "b c f h w -> b (f h w) c")
        y = ops["fc2"](F.gelu(ops["fc1"](ops["norm"](tokens))))
        return x + rearrange(y, "b (f h w) c -> b c f h w", f=f, h=h)


class TokenMLPKind(BlockKind):
    """The token MLP as a block kind: builder, params and MACs (block spec and latency inputs: the defaults)."""

    name = "token_mlp"
    ratio = 2

    def build(self, slot: Slot) -> TokenMLP:
        return TokenMLP(int(slot.c_out[0]), self.ratio)

    def params(self, slot: Slot) -> np.ndarray:
        c, r = slot.c_out.astype(np.int64), self.ratio
        return 2 * c + (c * r * c + r * c) + (r * c * c + c)  # norm, fc1, fc2

    def macs(self, slot: Slot) -> np.ndarray:
        c = slot.c_out.astype(np.float64)
        return 2 * self.ratio * c * c * slot.positions()


MLP_YAML = Path(__file__).with_name("micro-mlp.yaml")  # the space that names the kind


@pytest.fixture(scope="module")
def mlp_space():
    register_kind(TokenMLPKind())
    try:
        yield load_space(MLP_YAML)
    finally:
        unregister_kind("token_mlp")


def _perturbed(space, seed: int = 0) -> Supernet:
    torch.manual_seed(seed)
    net = Supernet(space).eval()
    with torch.no_grad():  # leave no zero-initialised branch: it would hide slicing bugs
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def _some_archs(space, n: int = 6) -> list:
    rng = np.random.default_rng(0)
    archs = [space.largest(r) for r in space.resolutions] + [space.smallest(r) for r in space.resolutions]
    return archs + [space.sample(rng) for _ in range(n)]


def test_a_new_kind_gets_exact_params(mlp_space):
    assert "token_mlp" in {s.kind for s in mlp_space.slots(mlp_space.largest(16))}
    with torch.device("meta"):
        net = Supernet(mlp_space)
    archs = _some_archs(mlp_space)
    counts = [sum(p.numel() for p in net.extract(a).parameters()) for a in archs]
    assert counts == mlp_space.params(archs).tolist()
    without = [{**a, "stages": [a["stages"][0], {**a["stages"][1], "attn": [0] * a["stages"][1]["depth"]}]}
               for a in archs]
    assert (mlp_space.params(archs) > mlp_space.params(without)).any()  # the MLPs are counted


def test_a_new_kind_extracts_exactly(mlp_space):
    net = _perturbed(mlp_space)
    x, t = torch.randn(2, 3, 2, 16, 16), torch.tensor([3.0, 700.0])
    for arch in [a for a in _some_archs(mlp_space) if a["res"] == 16]:
        with torch.no_grad():
            expected = net(x, t, arch)
            assert torch.allclose(net.extract(arch)(x, t), expected, atol=1e-5, rtol=0), arch
            assert torch.allclose(net(x, t, arch, use_temporal=False), net.extract(arch)(x, t, use_temporal=False),
                                  atol=1e-5, rtol=0)


def test_a_new_kind_gets_exact_flops(mlp_space):
    from fvcore.nn import FlopCountAnalysis

    kind = get_kind("token_mlp")
    net = _perturbed(mlp_space)
    arch = mlp_space.sample(np.random.default_rng(4), res=16)
    arch["stages"][1]["attn"] = [1] * arch["stages"][1]["depth"]
    for slot in mlp_space.slots([arch]):
        if slot.kind != "token_mlp" or not slot.active[0]:
            continue
        block = net.blocks[module_key(slot.name)].extract(kind.block_spec(slot))
        x = torch.randn(1, int(slot.c_in[0]), slot.frames, int(slot.size[0]), int(slot.size[0]))
        analysis = FlopCountAnalysis(block, (x,)).unsupported_ops_warnings(False)
        measured = 2 * sum(v for k, v in analysis.by_operator().items() if "norm" not in k)
        assert measured == 2 * kind.macs(slot)[0], slot.name


def test_a_new_kind_gets_latency_rows(mlp_space, tmp_path):
    from sned.predictors.latency_measure import MeasureSettings, measure_table

    keys = enumerate_keys(mlp_space, [8])
    assert {k.kind for k in keys} >= {"token_mlp", "attn", "res", "time_embed"}
    result = measure_table(mlp_space, tmp_path / "mlp.parquet", MeasureSettings(threads=1, repeats=1, warmup=0),
                           resolutions=[8], progress=False)
    assert result.complete and result.measured == len(keys)
    table = LatencyTable.load(tmp_path / "mlp.parquet", mlp_space)
    rows = table.rows[table.rows["kind"] == "token_mlp"]
    assert len(rows) == 2 and (rows["heads"] == 0).all() and (rows["median_ms"] > 0).all()  # widths 32, 64
    archs = [a for a in _some_archs(mlp_space) if a["res"] == 8]
    assert (table.predict(mlp_space, archs) > 0).all()
    key = BlockKey("token_mlp", 64, 64, 0, 4)
    assert unpack_key(key.code) == key


def test_a_new_kind_survives_the_space_round_trip(mlp_space):
    stages = mlp_space.to_dict()["stages"]
    assert "attention_kind" not in stages[0] and stages[1]["attention_kind"] == "token_mlp"
    from sned.supernet.space import SearchSpace

    stored = json.loads(json.dumps(mlp_space.to_dict()))  # as checkpoints and predictors store it
    again = SearchSpace(parse_space_spec(stored, mlp_space.name))
    assert again.hash == mlp_space.hash and again.spec == mlp_space.spec
    assert "attention_kind" not in str(load_space("tiny").to_dict())  # built-in spaces keep their hash


def test_a_space_naming_an_unknown_kind_is_refused(tmp_path):
    path = Path(tmp_path) / "bad.yaml"
    path.write_text(MLP_YAML.read_text().replace("attention_kind: token_mlp", "attention_kind: no_such_block"))
    with pytest.raises(SpaceError, match=r"attention_kind: unknown block kind 'no_such_block'; registered: \['stem'"):
        load_space(path)
    path.write_text(MLP_YAML.read_text().replace("attention: true, attention_kind", "attention: false, attention_kind"))
    with pytest.raises(SpaceError, match="needs attention: true"):
        load_space(path)


# ----------------------------------------------------------------------------- the registry


def test_registry_refuses_duplicates_bad_names_and_unregistering_built_ins():
    with pytest.raises(SpaceError, match="already registered"):
        register_kind(type(get_kind("attn"))())
    bad = type("Bad", (BlockKind,), {"name": "Bad-Name"})
    with pytest.raises(SpaceError, match="lower-case identifier"):
        register_kind(bad)
    with pytest.raises(SpaceError, match="expected a BlockKind"):
        register_kind(object())
    with pytest.raises(SpaceError, match="built in"):
        unregister_kind("res")
    assert kind_names()[:len(BUILTIN_KINDS)] == BUILTIN_KINDS == ("stem", "res", "res_proj", "attn", "down", "up",
                                                                    "head")


def test_an_entry_point_registers_a_kind_on_first_use(monkeypatch):
    class EntryPoint:
        name = "ep_mlp"

        def load(self):
            return type("EpMLP", (TokenMLPKind,), {"name": "ep_mlp"})

    monkeypatch.setattr(registry.metadata, "entry_points", lambda group: [EntryPoint()])
    try:
        assert get_kind("ep_mlp").name == "ep_mlp"
    finally:
        unregister_kind("ep_mlp")


# ----------------------------------------------------------------------------- every built-in kind


@pytest.fixture(scope="module")
def tiny_net():
    return _perturbed(load_space("tiny"))


def _recorded_inputs(kind: BlockKind, slot: Slot, i: int, generator: torch.Generator) -> tuple:
    """The inputs latency measurement feeds this block (a recording block returns them)."""
    key = BlockKey(slot.kind, *(int(a[i]) for a in kind.latency_key(slot)))
    probe = LatencyProbe(slot.spec, 2, lambda *shape: torch.randn(*shape, generator=generator),
                         torch.randn(2, slot.spec.time_embed_dim, generator=generator))
    return kind.latency_call(lambda *args: args, key, probe)()


@pytest.mark.parametrize("name", BUILTIN_KINDS)
def test_every_built_in_kind_is_exact(tiny_net, name):
    """Per kind: max module size and extracted sizes equal the formula; extract(spec) equals the elastic call."""
    space, kind = tiny_net.space, get_kind(name)
    largest = {s.name: s for s in space.slots(space.largest(space.resolutions[-1]))}
    archs = [space.largest(32), space.smallest(32), *(space.sample(np.random.default_rng(9), res=32)
                                                     for _ in range(2))]
    generator = torch.Generator().manual_seed(0)
    seen = 0
    for slot in space.slots(archs):
        if slot.kind != name:
            continue
        module = tiny_net.blocks[module_key(slot.name)]
        assert sum(p.numel() for p in module.parameters()) == kind.params(largest[slot.name])[0]
        for i in np.flatnonzero(slot.active)[:2]:
            spec = kind.block_spec(slot, int(i))
            static = module.extract(spec)
            assert sum(p.numel() for p in static.parameters()) == kind.params(slot)[i], (slot.name, spec)
            inputs = _recorded_inputs(kind, slot, int(i), generator)
            with torch.no_grad():
                assert torch.allclose(static(*inputs), module(*inputs, spec=spec), atol=1e-5, rtol=0), slot.name
            seen += 1
    assert seen
