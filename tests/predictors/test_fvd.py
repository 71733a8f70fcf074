"""Tests of sned.predictors.fvd (FVD/KVD maths, limits, bootstrap, feature files), .i3d (network, weights) and `sned fvd`.

The I3D network against an independent reference, and its BatchNorm-epsilon and naming rules: test_i3d.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from sned.predictors.fvd import (
    PUBLISHED_I3D_WEIGHTS,
    PublishedWeights,
    RankDeficientCovarianceWarning,
    bootstrap_confidence_intervals,
    frechet_distance,
    frechet_distance_from_stats,
    kernel_distance,
    load_features,
    register_published_weights,
    save_features,
)
from sned.predictors.i3d import (
    I3DFeatureExtractor,
    InceptionI3d,
    load_i3d_state_dict,
    random_state_dict,
    resample_frames,
)
from sned.search.cli import main
from sned.supernet.base.errors import UserError
from sned.supernet.video_io import write_video

R = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
F = 2 * R + 1


@pytest.fixture(autouse=True)
def _no_weights_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SNED_I3D_WEIGHTS", raising=False)


# ----------------------------------------------------------------------------- FVD / KVD maths


def test_fd_of_unit_gaussians_one_apart_in_2048_dims_is_2048() -> None:
    d = 2048
    fd = frechet_distance_from_stats(np.zeros(d), np.eye(d), np.ones(d), np.eye(d))
    assert fd == pytest.approx(2048.0, rel=1e-9)


def test_fd_reference_values_for_both_covariance_conventions() -> None:
    assert frechet_distance(R, F) == pytest.approx(5.1666667, abs=1e-6)  # N-1
    assert frechet_distance(R, F, cov="biased") == pytest.approx(5.0, abs=1e-9)  # 1/N
    assert frechet_distance(F, R) == pytest.approx(frechet_distance(R, F), abs=1e-9)


def test_fd_matches_scipy_sqrtm_on_non_commuting_covariances() -> None:
    rng = np.random.default_rng(3)
    a = rng.standard_normal((60, 12)) @ rng.standard_normal((12, 12))
    b = rng.standard_normal((40, 12)) @ rng.standard_normal((12, 12)) + 0.5
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    assert not np.allclose(s_a @ s_b, (s_a @ s_b).T)  # the product is not symmetric
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)


def test_fd_of_identical_rank_deficient_sets_is_about_zero() -> None:
    a = np.random.default_rng(0).standard_normal((30, 400))  # 30 videos, 400-d: singular covariance
    with pytest.warns(RankDeficientCovarianceWarning):
        assert abs(frechet_distance(a, a)) < 1e-3
    with pytest.warns(RankDeficientCovarianceWarning):
        assert frechet_distance(a, a + 3.0) == pytest.approx(400 * 9.0, abs=1e-2)  # a pure shift adds |mu|^2


def test_kvd_reference_value_and_subsets() -> None:
    assert kernel_distance(R, F) == pytest.approx(120.7083333, abs=1e-6)
    # Subsets of the full size hold every row: same estimate as the full sets.
    assert kernel_distance(R, F, subsets=3, subset_size=4) == pytest.approx(120.7083333, abs=1e-6)
    small = kernel_distance(R, F, subsets=5, subset_size=2, seed=1)
    assert small == kernel_distance(R, F, subsets=5, subset_size=2, seed=1)  # seeded
    assert small != pytest.approx(120.7083333)


def test_kvd_is_unbiased_so_it_can_be_negative() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((50, 8)), rng.standard_normal((50, 8))
    values = [kernel_distance(a, b, subsets=1, subset_size=20, seed=s) for s in range(20)]
    assert min(values) < 0 < max(values)


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (np.zeros((4, 3)), np.zeros((4, 2)), "feature dimensions differ: 3 vs 2"),
        (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2"),
        (np.zeros(3), np.zeros((4, 3)), "shape"),
        (np.full((3, 2), np.nan), np.zeros((4, 2)), "NaN"),
    ],
)
def test_bad_feature_sets_are_user_errors(a: np.ndarray, b: np.ndarray, match: str) -> None:
    with pytest.raises(UserError, match=match):
        frechet_distance(a, b)
    with pytest.raises(UserError, match=match):
        kernel_distance(a, b)


def test_unknown_covariance_kind_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unbiased, biased"):
        frechet_distance(R, F, cov="sample")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- limits: n vs d, PCA, bootstrap


def gaussian_pair(d: int = 4, seed: int = 123) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Two Gaussians with non-commuting covariances and their Fréchet distance in closed form.

    FD = |mu1 - mu2|^2 + tr(S1 + S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2), the symmetric form of
    tr((S1 S2)^1/2), computed with scipy's sqrtm and eigvalsh (not the code under test).
    """
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = a @ a.T / d + 0.5 * np.eye(d), b @ b.T / d + 0.5 * np.eye(d)
    mu1, mu2 = np.zeros(d), np.full(d, 0.5)
    root = scipy.linalg.sqrtm(s1).real
    truth = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2) - 2 * np.sum(np.sqrt(np.linalg.eigvalsh(root @ s2 @ root)))
    return mu1, s1, mu2, s2, float(truth)


def test_fd_of_two_samples_of_one_gaussian_falls_as_n_grows() -> None:
    d = 8
    fds = []
    for n in (50, 200, 800, 3200):  # the FD estimate's bias is ~d/n: about 4x less per step
        rng = np.random.default_rng(n)
        fds.append(frechet_distance(rng.standard_normal((n, d)), rng.standard_normal((n, d))))
    assert all(later < earlier for earlier, later in zip(fds, fds[1:], strict=False)), fds
    assert fds[-1] < fds[0] / 20, fds


@pytest.mark.parametrize("method", ["percentile", "basic"])
def test_bootstrap_interval_covers_the_closed_form_fd(method: str) -> None:
    mu1, s1, mu2, s2, truth = gaussian_pair()
    rng = np.random.default_rng(0)
    real, generated = rng.multivariate_normal(mu1, s1, size=2000), rng.multivariate_normal(mu2, s2, size=2000)
    result = bootstrap_confidence_intervals(real, generated, np.random.default_rng(1), num_resamples=300,
                                            confidence=0.99, method=method)
    value, low, high = result.fvd
    assert value == pytest.approx(frechet_distance(real, generated), rel=1e-9)
    assert low < truth < high, (truth, result.fvd)
    assert 0 < high - low < truth / 2  # an informative interval, not a vacuous one
    assert result.kvd.value == pytest.approx(kernel_distance(real, generated), rel=1e-9)
    assert result.kvd.low < result.kvd.value < result.kvd.high
    assert (result.confidence, result.num_resamples, result.method) == (0.99, 300, method)


def test_bootstrap_is_seeded_and_kvd_interval_covers_zero_for_one_distribution() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((300, 3)), rng.standard_normal((300, 3))
    first = bootstrap_confidence_intervals(a, b, np.random.default_rng(7), num_resamples=100)
    assert first == bootstrap_confidence_intervals(a, b, np.random.default_rng(7), num_resamples=100)
    assert first != bootstrap_confidence_intervals(a, b, np.random.default_rng(8), num_resamples=100)
    # KVD replicates leave out self-pairs of duplicated videos, so they do not all sit above 0.
    assert first.kvd.low < 0 < first.kvd.high


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rng": 0}, TypeError, "numpy.random.Generator"),
        ({"num_resamples": 1}, UserError, "num_resamples must be an integer >= 2; got 1"),
        ({"confidence": 1.0}, UserError, r"confidence must be in \(0, 1\)"),
        ({"method": "bca"}, UserError, "percentile, basic"),
        ({"cov": "sample"}, UserError, "unbiased, biased"),
        ({"pca_dim": 3}, UserError, r"pca_dim must be None or an integer in 1..2"),
    ],
)
def test_bad_bootstrap_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    arguments = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(error, match=match):
        bootstrap_confidence_intervals(R, F, **arguments)


def test_rank_deficiency_warns_when_n_is_at_most_the_dimension() -> None:
    rng = np.random.default_rng(0)
    with pytest.warns(RankDeficientCovarianceWarning, match="10 real and 40 generated videos in 10 dimensions"):
        frechet_distance(rng.standard_normal((10, 10)), rng.standard_normal((40, 10)))
    with pytest.warns(RankDeficientCovarianceWarning, match="n <= 10"):
        bootstrap_confidence_intervals(rng.standard_normal((40, 10)), rng.standard_normal((10, 10)),
                                       np.random.default_rng(0), num_resamples=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(rng.standard_normal((11, 10)), rng.standard_normal((11, 10)))  # n = d + 1: full rank
        kernel_distance(rng.standard_normal((5, 10)), rng.standard_normal((5, 10)))  # no covariance in KVD
        # 30 videos of 400-d features, scored in the real set's top 20 axes: no longer rank-deficient.
        frechet_distance(rng.standard_normal((30, 400)), rng.standard_normal((30, 400)), pca_dim=20)


def test_pca_is_fitted_on_the_real_set_and_equals_projecting_the_features() -> None:
    rng = np.random.default_rng(2)
    mixing = rng.standard_normal((6, 6))
    real, generated = rng.standard_normal((80, 6)) @ mixing, rng.standard_normal((60, 6)) @ mixing + 0.3
    assert frechet_distance(real, generated, pca_dim=6) == pytest.approx(frechet_distance(real, generated), rel=1e-9)
    _, vectors = np.linalg.eigh(np.cov(real, rowvar=False))
    axes = vectors[:, -2:]  # the real set's top 2 principal axes
    expected = frechet_distance(real @ axes, generated @ axes)
    assert frechet_distance(real, generated, pca_dim=2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(generated, real, pca_dim=2) != pytest.approx(expected, rel=1e-3)  # fitted on the first
    for bad in (0, 7, 2.0, True):
        with pytest.raises(UserError, match=r"pca_dim must be None or an integer in 1..6"):
            frechet_distance(real, generated, pca_dim=bad)  # type: ignore[arg-type]


def test_published_weights_table_is_strict(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sned.predictors.i3d_published.PUBLISHED_I3D_WEIGHTS", {})
    from sned.predictors import fvd

    entry = PublishedWeights("i3d-kinetics400", "TATS i3d_pretrained_400.pt", 1e-5)
    register_published_weights("ab" * 32, entry)
    assert fvd.is_comparable_to_published("i3d-kinetics400:abababababab", "ab" * 32)
    assert not fvd.is_comparable_to_published("i3d-kinetics400:abababababab-bn-eps-0.001", "ab" * 32)
    assert not fvd.is_comparable_to_published("i3d:cdcdcdcdcdcd", "cd" * 32)
    with pytest.raises(UserError, match="already registered as 'i3d-kinetics400'"):
        register_published_weights("ab" * 32, entry)
    with pytest.raises(UserError, match="64 lowercase hex digits"):
        register_published_weights("AB" * 32, entry)
    assert PUBLISHED_I3D_WEIGHTS == {}  # the shipped table holds no hash sned could not check


def test_fvd_module_does_not_import_torch() -> None:
    code = "import sys; sys.modules['torch'] = None; import sned.predictors.fvd as f; print(f.frechet_distance([[0,0],[1,1]], [[1,1],[2,3]]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout) > 0


# ----------------------------------------------------------------------------- feature files


def test_feature_file_round_trip_and_extractor_check(tmp_path: Path) -> None:
    feats = np.random.default_rng(0).standard_normal((5, 400)).astype(np.float32)
    path = save_features(tmp_path / "sub" / "real.npz", feats, "i3d-kinetics400", "ab" * 32, source="data/ucf")
    loaded = load_features(path)
    assert path.name == "real.npz" and list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temp file left
    np.testing.assert_array_equal(loaded.features, feats)
    assert (loaded.extractor, loaded.weights_sha256, loaded.source) == ("i3d-kinetics400", "ab" * 32, "data/ucf")
    loaded.check_extractor("i3d-kinetics400", "ab" * 32)
    with pytest.raises(UserError, match="extracted by i3d-kinetics400"):
        loaded.check_extractor("i3d-random", "cd" * 32)


def test_bad_feature_files_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    np.savez(tmp_path / "plain.npz", features=np.zeros((3, 4)))
    with pytest.raises(UserError, match="not a readable sned feature file"):
        load_features(tmp_path / "junk.npz")
    with pytest.raises(UserError, match="sned feature file"):
        load_features(tmp_path / "plain.npz")
    with pytest.raises(FileNotFoundError):
        load_features(tmp_path / "missing.npz")


# ----------------------------------------------------------------------------- I3D network and weights


UNITS = ["Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
MIXED = [f"Mixed_{m}" for m in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c")]
BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def pytorch_i3d_keys() -> set[str]:
    """The key set of a pytorch-i3d InceptionI3d state dict, written out from its layout."""
    prefixes = UNITS + [f"{m}.{b}" for m in MIXED for b in ("b0", "b1a", "b1b", "b2a", "b2b", "b3b")]
    keys = {f"{p}.conv3d.weight" for p in prefixes} | {f"{p}.bn.{s}" for p in prefixes for s in BN}
    return keys | {"logits.conv3d.weight", "logits.conv3d.bias"}


def test_network_has_the_pytorch_i3d_layout() -> None:
    state = InceptionI3d(400).state_dict()
    assert set(state) == pytorch_i3d_keys()
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Mixed_4b.b1b.conv3d.weight"].shape == (208, 96, 3, 3, 3)
    assert state["Mixed_5c.b3b.conv3d.weight"].shape == (128, 832, 1, 1, 1)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert InceptionI3d(400).Mixed_4b.b1b.bn.eps == 1e-3
    assert InceptionI3d(400, bn_eps=1e-5).Conv3d_1a_7x7.bn.eps == 1e-5


def test_network_rejects_clips_it_cannot_pool() -> None:
    with pytest.raises(ValueError, match="t >= 9"):
        InceptionI3d(400)(torch.zeros(1, 3, 8, 224, 224))


def test_resample_frames_repeats_nearest_indices() -> None:
    assert resample_frames(8) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert resample_frames(5) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4]
    assert resample_frames(1) == [0] * 16


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic pytorch-i3d checkpoint: this network's state dict with seeded values, torch.save'd."""
    state = random_state_dict(400, seed=7)
    path = tmp_path_factory.mktemp("weights") / "i3d_pretrained_400.pt"
    torch.save(state, path)
    return path


def test_state_dict_file_loads_through_the_extractor(weights_file: Path) -> None:
    ex = I3DFeatureExtractor(weights=weights_file)
    assert ex.weights_sha256 == hashlib.sha256(weights_file.read_bytes()).hexdigest()
    # 400 classes do not make a file the published network: it is named by its hash.
    assert ex.name == f"i3d:{ex.weights_sha256[:12]}" and not ex.is_random and not ex.is_comparable_to_published
    assert ex.description.startswith("user-supplied 400-class weights")
    assert (ex.layout, ex.bn_eps) == ("pytorch-i3d", 1e-3)  # saved with num_batches_tracked
    expected = torch.load(weights_file, weights_only=True)
    for key, value in ex._net.state_dict().items():  # noqa: SLF001 - the weights must land where they belong
        torch.testing.assert_close(value, expected[key])


def test_module_prefix_missing_batch_counters_and_other_class_counts_load(tmp_path: Path) -> None:
    state = {f"module.{k}": v for k, v in random_state_dict(157, seed=1).items() if "num_batches_tracked" not in k}
    torch.save(state, tmp_path / "charades.pt")
    loaded = load_i3d_state_dict(tmp_path / "charades.pt")
    assert set(loaded) == pytorch_i3d_keys() and loaded["logits.conv3d.bias"].shape == (157,)
    assert int(loaded["Mixed_3b.b0.bn.num_batches_tracked"]) == 0
    ex = I3DFeatureExtractor(weights=tmp_path / "charades.pt")
    assert ex.name.startswith("i3d:") and ex.description.startswith("user-supplied 157-class weights")
    assert (ex.num_features, ex.layout, ex.bn_eps) == (157, "tats", 1e-5)  # no counters: TATS layout


def test_env_variable_names_the_weights(weights_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNED_I3D_WEIGHTS", str(weights_file))
    assert I3DFeatureExtractor().weights_path == weights_file


def test_wrong_or_truncated_weights_are_one_user_error(weights_file: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights_file.read_bytes()[: 1 << 20])
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    state = random_state_dict(400)
    del state["Mixed_4c.b2b.conv3d.weight"]
    torch.save(state, tmp_path / "missing.pt")
    state = random_state_dict(400)
    state["Mixed_4c.b2b.conv3d.weight"] = torch.zeros(64, 24, 1, 3, 3)
    torch.save(state, tmp_path / "shape.pt")
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    cases = {truncated: "cannot read I3D weights", text: "cannot read I3D weights",
             tmp_path / "missing.pt": "1 missing .*Mixed_4c.b2b.conv3d.weight",
             tmp_path / "shape.pt": r"Mixed_4c.b2b.conv3d.weight has shape \(64, 24, 1, 3, 3\)",
             tmp_path / "list.pt": "not a dict of tensors"}
    for path, match in cases.items():
        with pytest.raises(UserError, match=match) as info:
            I3DFeatureExtractor(weights=path)
        assert "\n" not in str(info.value)


class RecordingDetector(nn.Module):
    """A TorchScript stand-in for StyleGAN-V's detector: returns its input statistics and flags."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        flags = torch.tensor([float(rescale), float(resize), float(return_features), float(x.shape[2])])
        stats = torch.cat([x.mean(dim=(2, 3, 4)), x.amax(dim=(2, 3, 4))], dim=1)
        return torch.cat([stats, flags.expand(x.shape[0], 4), torch.zeros(x.shape[0], 390)], dim=1)


def test_torchscript_detector_gets_uint8_valued_input_and_stylegan_v_flags(tmp_path: Path) -> None:
    torch.jit.script(RecordingDetector()).save(str(tmp_path / "i3d_torchscript.pt"))
    ex = I3DFeatureExtractor(weights=tmp_path / "i3d_torchscript.pt")
    assert ex.name == f"i3d:{ex.weights_sha256[:12]}" and not ex.is_comparable_to_published
    assert (ex.layout, ex.bn_eps) == ("torchscript", None)
    with pytest.raises(UserError, match="TorchScript detector with its BatchNorm compiled in"):
        I3DFeatureExtractor(weights=tmp_path / "i3d_torchscript.pt", bn_eps=1e-3)
    videos = torch.full((2, 3, 8, 16, 16), -1.0)
    videos[:, 0] = 1.0  # red channel at full scale
    feats = ex.features(videos)
    assert feats.shape == (2, 400)
    np.testing.assert_allclose(feats[0, :6], [255, 0, 0, 255, 0, 0])
    np.testing.assert_allclose(feats[0, 6:10], [1, 1, 1, 16])  # rescale, resize, return_features; 8 -> 16 frames


# ----------------------------------------------------------------------------- features of videos (runs I3D)


def test_random_extractor_is_deterministic_and_resamples_short_clips() -> None:
    ex = I3DFeatureExtractor(batch_size=2)
    assert ex.name == "i3d-random" and ex.is_random
    assert ex.weights_sha256 == I3DFeatureExtractor().weights_sha256  # fixed seed: same network every time
    clip = torch.rand(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = ex.features(clip)
    assert feats.shape == (1, 400) and feats.dtype == np.float32 and np.isfinite(feats).all()
    np.testing.assert_allclose(feats, ex.features(clip[:, :, resample_frames(8)]), rtol=1e-5, atol=1e-5)


def _write_sets(root: Path, count: int, frames: int, size: int = 32) -> dict[str, Path]:
    """Real videos (smooth moving colour blobs), the same with mild pixel noise, and with shifted colours."""
    rng = np.random.default_rng(0)
    t, y, x = np.meshgrid(np.arange(frames), np.arange(size), np.arange(size), indexing="ij")
    for i in range(count):
        colour = rng.uniform(60, 200, size=3)
        cx, cy, vx = rng.uniform(8, 24), rng.uniform(8, 24), rng.uniform(-1.5, 1.5)
        blob = np.exp(-((x - cx - vx * t) ** 2 + (y - cy) ** 2) / 40.0)[..., None]
        real = np.clip(40 + blob * colour, 0, 255)
        noisy = np.clip(real + rng.normal(0, 4, real.shape), 0, 255)
        shifted = np.clip(real + np.array([70, -30, 50]), 0, 255)
        for name, video in (("real", real), ("noisy", noisy), ("shifted", shifted)):
            write_video(root / name / f"{i:02d}.mp4", video.astype(np.uint8))
    return {name: root / name for name in ("real", "noisy", "shifted")}


def _fvd_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["fvd", *argv, "--json", "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_orders_shifted_colours_above_noise_and_identical_sets_at_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sets = _write_sets(tmp_path, count=3, frames=9)  # 9 frames: the least I3D takes without resampling
    cache = tmp_path / "real.npz"
    with pytest.warns(RankDeficientCovarianceWarning, match="3 real and 3 generated videos in 400 dimensions"):
        noisy = _fvd_json(capsys, str(sets["real"]), str(sets["noisy"]), "--save-features", str(cache))
    warnings.simplefilter("ignore", RankDeficientCovarianceWarning)  # 3 videos, 400-d: expected (pytest restores filters)
    assert noisy["extractor"] == "i3d-random" and noisy["comparable_to_published"] is False
    assert noisy["n_real"] == noisy["n_fake"] == 3 and load_features(cache).extractor == "i3d-random"
    shifted = _fvd_json(capsys, str(cache), str(sets["shifted"]))
    assert shifted["fvd"] > 10 * noisy["fvd"] > 0
    assert shifted["kvd"] > noisy["kvd"]
    # Cached real features against the same videos extracted afresh: identical sets.
    assert main(["fvd", str(cache), str(sets["real"]), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "i3d-random" in out and "FVD (random I3D features; not comparable to published FVD)" in out
    fvd = float(out.split("not comparable to published FVD)")[1].split()[0])
    assert abs(fvd) < 1e-3


@pytest.mark.slow
def test_metric_ordering_on_more_short_clips(tmp_path: Path) -> None:
    sets = _write_sets(tmp_path, count=8, frames=8)  # the tiny experiment's 8 frames: resampled to 16
    ex = I3DFeatureExtractor(batch_size=4)
    feats = {name: ex.features_from_folder(path, progress=False) for name, path in sets.items()}
    assert abs(frechet_distance(feats["real"], ex.features_from_folder(sets["real"], progress=False))) < 1e-3
    for score in (frechet_distance, kernel_distance):
        assert score(feats["real"], feats["shifted"]) > score(feats["real"], feats["noisy"])
    assert kernel_distance(feats["real"], feats["shifted"], subsets=4, subset_size=6) > kernel_distance(
        feats["real"], feats["noisy"], subsets=4, subset_size=6
    )


# ----------------------------------------------------------------------------- CLI bad input


def _bad(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["fvd", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    write_video(tmp_path / "one" / "a.mp4", np.zeros((8, 16, 16, 3), np.uint8))
    save_features(tmp_path / "a.npz", np.zeros((4, 400)), "i3d-random", "00" * 32)
    save_features(tmp_path / "b.npz", np.zeros((4, 157)), "i3d-random", "00" * 32)
    save_features(tmp_path / "k.npz", np.zeros((4, 400)), "i3d-kinetics400", "11" * 32)
    assert "no videos under" in _bad(capsys, str(tmp_path / "empty"), str(tmp_path / "a.npz"))
    assert "has 1 video" in _bad(capsys, str(tmp_path / "a.npz"), str(tmp_path / "one"))
    assert "feature dimensions differ: 400 vs 157" in _bad(capsys, str(tmp_path / "a.npz"), str(tmp_path / "b.npz"))
    assert "extracted by i3d-kinetics400" in _bad(capsys, str(tmp_path / "a.npz"), str(tmp_path / "k.npz"))
    assert "no such folder" in _bad(capsys, str(tmp_path / "nowhere"), str(tmp_path / "a.npz"))
    assert "--n must be >= 2" in _bad(capsys, str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), "--n", "1")
    assert "--i3d-bn-eps applies when I3D runs" in _bad(capsys, str(tmp_path / "a.npz"), str(tmp_path / "a.npz"),
                                                        "--i3d-bn-eps", "1e-3")


def test_cli_compares_feature_files_without_running_i3d(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "i3d-kinetics400:abababababab"
    save_features(tmp_path / "r.npz", R, name, "ab" * 32)
    save_features(tmp_path / "f.npz", F, name, "ab" * 32)
    files = (str(tmp_path / "r.npz"), str(tmp_path / "f.npz"))
    # Not in the table of published networks: the name alone does not make scores comparable.
    result = _fvd_json(capsys, *files, "--cov", "biased")
    assert result["fvd"] == pytest.approx(5.0) and result["kvd"] == pytest.approx(120.7083333)
    assert result["extractor"] == name and result["comparable_to_published"] is False
    assert main(["fvd", *files]) == 0
    assert "not comparable to published FVD)  5.1667" in capsys.readouterr().out
    # Once the sha256 is a known published network, the same files are.
    monkeypatch.setitem(PUBLISHED_I3D_WEIGHTS, "ab" * 32, PublishedWeights("i3d-kinetics400", "TATS file", 1e-5))
    assert _fvd_json(capsys, *files)["comparable_to_published"] is True
    assert main(["fvd", *files]) == 0
    out = capsys.readouterr().out
    assert "FVD  5.1667" in out and "not comparable" not in out
    pca = _fvd_json(capsys, *files, "--pca-dim", "1")
    assert pca["pca_dim"] == 1 and pca["comparable_to_published"] is False
    assert pca["fvd"] == pytest.approx(frechet_distance(R, F, pca_dim=1))
