"""Tests for sned.predictors.features (``sned features``): training, the card, the extractor, IS, wiring."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sned.predictors.features import DomainFeatureExtractor, prepare_clips
from sned.predictors.features_card import CARD_FILE, WEIGHTS_FILE, check_classes, data_folder_hash, load_card
from sned.predictors.features_training import STATE_FILE, FeatureTrainingConfig, train_features
from sned.predictors.fvd import RankDeficientCovarianceWarning, inception_score
from sned.search.cli import main
from sned.supernet.base.errors import UserError
from sned.supernet.base.files import file_sha256
from sned.supernet.space import load_space
from sned.supernet.synth import CLASS_NAMES, render_video, synthesize
from sned.supernet.video_io import write_video

TINY = {"widths": (8, 16), "batch_size": 4, "device": "cpu", "progress": False}


def _config(data: Path, out: Path, **overrides) -> FeatureTrainingConfig:
    return FeatureTrainingConfig(data=str(data), out=str(out), **{"epochs": 1, **TINY, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, n=12, frames=8, size=32, seed=0, progress=False)  # 2 videos in each of 6 classes
    return out


@pytest.fixture(scope="module")
def features_dir(data_dir: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features") / "domain"
    train_features(_config(data_dir, out))
    return out


@pytest.fixture(scope="module")
def extractor(features_dir: Path) -> DomainFeatureExtractor:
    return DomainFeatureExtractor(features_dir, batch_size=4)


def _write_classes(root: Path, classes: dict[str, int], frames: int = 8, size: int = 16) -> Path:
    """A UCF-101-layout folder with ``count`` plain videos per class."""
    for name, count in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            write_video(root / name / f"{name}_{i}.mp4", np.full((frames, size, size, 3), 40 * i + 20, np.uint8))
    return root


# ----------------------------------------------------------------------------- training and the card


def test_training_writes_weights_and_a_complete_card(features_dir: Path, data_dir: Path) -> None:
    assert sorted(p.name for p in features_dir.iterdir()) == [CARD_FILE, WEIGHTS_FILE]  # partial state removed
    raw = json.loads((features_dir / CARD_FILE).read_text())
    for key in ("classes", "frames", "size", "feature_dim", "heldout_accuracy", "data_hash", "seed", "epochs",
                "seconds", "command", "commit", "date", "weights_sha256"):
        assert key in raw, key
    card = load_card(features_dir)
    assert card.classes == tuple(sorted(CLASS_NAMES)) and card.num_classes == 6
    assert (card.frames, card.size, card.feature_dim, card.widths) == (8, 32, 16, (8, 16))
    assert card.heldout_videos == 6 and card.train_videos == 6  # one of each class's two videos held out
    assert 0.0 <= card.heldout_accuracy <= 1.0 and set(card.heldout_per_class) == set(CLASS_NAMES)
    assert card.data_hash == data_folder_hash(data_dir) and card.data == str(data_dir.resolve())
    assert (card.seed, card.epochs) == (0, 1) and card.seconds > 0
    assert card.command.startswith("sned features train ") and "--widths 8,16" in card.command
    assert card.commit is None or isinstance(card.commit, str)
    assert card.weights_sha256 == file_sha256(features_dir / WEIGHTS_FILE)


def test_data_hash_follows_paths_and_sizes(data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    for path in sorted(data_dir.rglob("*.mp4")):
        target = copy / path.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    assert data_folder_hash(copy) == data_folder_hash(data_dir)
    first = sorted(copy.rglob("*.mp4"))[0]
    first.rename(first.with_name("renamed.mp4"))
    assert data_folder_hash(copy) != data_folder_hash(data_dir)


def test_a_killed_run_resumes_to_the_same_weights_and_a_finished_one_is_reused(data_dir: Path, tmp_path: Path) -> None:
    whole = train_features(_config(data_dir, tmp_path / "whole", epochs=2))

    def stop(epoch: int, metrics) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_features(_config(data_dir, tmp_path / "killed", epochs=2), on_epoch_end=stop)
    assert (tmp_path / "killed" / STATE_FILE).is_file() and not (tmp_path / "killed" / CARD_FILE).exists()
    resumed = train_features(_config(data_dir, tmp_path / "killed", epochs=2))
    assert resumed.resumed_from_epoch == 1 and not (tmp_path / "killed" / STATE_FILE).exists()
    assert resumed.card.weights_sha256 == whole.card.weights_sha256  # seeded per (seed, video, epoch)
    again = train_features(_config(data_dir, tmp_path / "killed", epochs=2))
    assert again.is_reused and again.card == resumed.card
    with pytest.raises(UserError, match="already holds features made with epochs=2"):
        train_features(_config(data_dir, tmp_path / "killed", epochs=3))


def _train_cli(capsys: pytest.CaptureFixture[str], data: Path, out: Path) -> str:
    assert main(["features", "train", str(data), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_cli_refuses_folders_a_classifier_cannot_learn(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _write_classes(tmp_path / "one", {"Only": 2})
    assert "1 class folder ([Only]); a classifier needs at least 2" in _train_cli(capsys, one, tmp_path / "o1")
    empty = _write_classes(tmp_path / "empty", {"A": 1, "B": 1})
    (empty / "C").mkdir()
    err = _train_cli(capsys, empty, tmp_path / "o2")
    assert "class folders without videos" in err and "[C]" in err
    loose = _write_classes(tmp_path / "loose", {"A": 1, "B": 1})
    write_video(loose / "stray.mp4", np.zeros((8, 16, 16, 3), np.uint8))
    assert "outside any class folder" in _train_cli(capsys, loose, tmp_path / "o3")
    assert "does not exist" in _train_cli(capsys, tmp_path / "nowhere", tmp_path / "o4")
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3", "o4"))


# ----------------------------------------------------------------------------- the extractor


def test_extractor_has_the_i3d_interface_and_probabilities(extractor: DomainFeatureExtractor,
                                                           features_dir: Path) -> None:
    sha = file_sha256(features_dir / WEIGHTS_FILE)
    assert extractor.name == f"domain:{sha[:12]}" and extractor.weights_sha256 == sha
    assert extractor.is_comparable_to_published is False and extractor.is_random is False
    assert extractor.num_features == 16 and len(extractor.classes) == 6 and extractor.name in extractor.description
    videos = torch.rand(5, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    features, probabilities = extractor.features_and_probabilities(videos)
    assert features.shape == (5, 16) and features.dtype == np.float32 and np.isfinite(features).all()
    assert probabilities.shape == (5, 6) and (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(extractor.features(videos), features, atol=1e-6)
    np.testing.assert_allclose(extractor.probabilities(videos), probabilities, atol=1e-6)
    uint8 = [((v.permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().astype(np.uint8) for v in videos]
    assert extractor.features_from_arrays(uint8).shape == (5, 16)
    with pytest.raises(UserError, match="float tensor"):
        extractor.features(torch.zeros(1, 3, 8, 32, 32, dtype=torch.uint8))


def test_inputs_of_any_size_and_length_are_brought_to_the_training_geometry(extractor: DomainFeatureExtractor
                                                                            ) -> None:
    from sned.supernet.data import resize_clips

    # A 64 px video is area-averaged to 32 px inside: the same features as its 32 px version.
    scenes = {size: [render_video(name, 0, 8, size, seed=0) for name in sorted(CLASS_NAMES)] for size in (32, 64, 128)}
    x64 = torch.from_numpy(np.stack(scenes[64])).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0  # (6, 3, 8, 64, 64)
    np.testing.assert_allclose(extractor.features(x64), extractor.features(resize_clips(x64, 32)), rtol=1e-4,
                               atol=1e-5)
    # The same scene rendered at 32, 64 and 128 px (antialiased per size, so not the same pixels):
    # each stays nearer its 32 px rendering than any two different scenes are to each other.
    feats = {size: extractor.features_from_arrays(videos) for size, videos in scenes.items()}
    between = np.linalg.norm(feats[32][:, None] - feats[32][None], axis=2)[~np.eye(6, dtype=bool)].min()
    for size in (64, 128):
        across = np.linalg.norm(feats[size] - feats[32], axis=1)
        assert across.max() < 0.75 * between, (size, across, between)
    # 16 frames = two 8-frame windows, averaged; 4 frames are resampled to 8 by nearest index.
    video = torch.rand(1, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    halves = extractor.features(torch.cat([video[:, :, :8], video[:, :, 8:]]))
    np.testing.assert_allclose(extractor.features(video)[0], halves.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert prepare_clips(video[:, :, :4], 8, 32).shape == (1, 1, 3, 8, 32, 32)
    np.testing.assert_allclose(extractor.features(video[:, :, :4]),
                               extractor.features(video[:, :, [0, 0, 1, 1, 2, 2, 3, 3]]), atol=1e-6)


def test_another_datasets_classes_are_refused(features_dir: Path, data_dir: Path, tmp_path: Path) -> None:
    card = load_card(features_dir)
    other = _write_classes(tmp_path / "fruit", {"Apple": 1, "Banana": 1})
    with pytest.raises(UserError) as error:
        check_classes(card, other)
    message = str(error.value)
    assert "[Apple, Banana]" in message and "BouncingShapes" in message and "\n" not in message
    assert check_classes(card, data_dir) == sorted(CLASS_NAMES)
    (tmp_path / "flat").mkdir()
    write_video(tmp_path / "flat" / "a.mp4", np.zeros((8, 16, 16, 3), np.uint8))
    assert check_classes(card, tmp_path / "flat") == []  # generated videos: nothing to check
    assert check_classes(card, _write_classes(tmp_path / "split", {"OrbitingBlobs": 1})) == ["OrbitingBlobs"]


def test_changed_weights_or_a_missing_card_are_user_errors(features_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no card.json"):
        DomainFeatureExtractor(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / CARD_FILE).write_text((features_dir / CARD_FILE).read_text())
    (copy / WEIGHTS_FILE).write_bytes((features_dir / WEIGHTS_FILE).read_bytes() + b"\0")
    with pytest.raises(UserError, match="the weights changed after training"):
        DomainFeatureExtractor(copy)


# ----------------------------------------------------------------------------- inception score


def test_inception_score_on_known_inputs() -> None:
    assert inception_score(np.full((20, 5), 0.2), splits=4) == pytest.approx((1.0, 0.0))
    one_hot = np.eye(4)[np.arange(40) % 4]  # every split of 4 rows holds each class once
    assert inception_score(one_hot, splits=10) == pytest.approx((4.0, 0.0))
    assert inception_score(one_hot, splits=1) == pytest.approx((4.0, 0.0))
    mean, std = inception_score(np.eye(4)[[0, 0, 1, 2]], splits=2)  # parts {0, 0} -> 1 and {1, 2} -> 2
    assert (mean, std) == pytest.approx((1.5, 0.5))
    for bad, match in ((np.ones((3, 2)), "sum to 1"), (np.full((2, 2), np.nan), "finite"),
                       (np.full(4, 0.25), "num_videos, num_classes")):
        with pytest.raises(UserError, match=match):
            inception_score(bad, splits=1)
    with pytest.raises(UserError, match="splits must be an integer between 1 and the 4 rows"):
        inception_score(np.full((4, 2), 0.5), splits=5)


# ----------------------------------------------------------------------------- sned fvd / sned evaluate


@pytest.mark.filterwarnings("ignore::sned.predictors.fvd.RankDeficientCovarianceWarning")
def test_sned_fvd_with_domain_features_end_to_end(features_dir: Path, data_dir: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    fake = tmp_path / "fake"  # "generated": flat, at 64 px
    for i, name in enumerate(sorted(CLASS_NAMES)[:4]):
        write_video(fake / f"{i}.mp4", render_video(name, 5, 8, 64, seed=3))
    argv = ["fvd", str(data_dir), str(fake), "--features", str(features_dir), "--device", "cpu"]
    assert main([*argv, "--json", "--is-splits", "2", "--save-features", str(tmp_path / "real.npz")]) == 0
    result = json.loads(capsys.readouterr().out)
    extractor = DomainFeatureExtractor(features_dir)
    assert result["extractor"] == extractor.name and result["comparable_to_published"] is False
    assert (result["n_real"], result["n_fake"], result["inception_score_splits"]) == (12, 4, 2)
    assert 1.0 <= result["inception_score"] <= 6.0 and result["fvd"] > 0 and math.isfinite(result["kvd"])
    assert main(["fvd", str(tmp_path / "real.npz"), str(fake), "--features", str(features_dir)]) == 0
    out = capsys.readouterr().out
    assert "FVD (domain classifier features; not comparable to published FVD)" in out and "IS   " in out
    other = _write_classes(tmp_path / "fruit", {"Apple": 2, "Banana": 2})
    for bad, message in ((["fvd", str(other), str(fake), "--features", str(features_dir)], "trained on"),
                         ([*argv, "--i3d", str(tmp_path / "x.pt")], "--features replaces I3D")):
        assert main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_sned_features_show(features_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", "show", str(features_dir), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"].startswith("domain:") and shown["feature_dim"] == 16
    other = _write_classes(tmp_path / "fruit", {"Apple": 1, "Banana": 1})
    assert main(["features", "show", str(features_dir), "--data", str(other)]) == 2
    assert "unknown here: [Apple, Banana]" in capsys.readouterr().err


def test_sned_evaluate_refuses_features_of_another_dataset(features_dir: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = _write_classes(tmp_path / "fruit", {"Apple": 1, "Banana": 1})
    argv = ["evaluate", "tiny", "--ckpt", str(tmp_path / "no-run"), "--data", str(other), "--out",
            str(tmp_path / "t.parquet"), "--features", str(features_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "[Apple, Banana]" in err, err


def test_run_trial_with_domain_features_fills_the_inception_score(features_dir: Path, data_dir: Path,
                                                                  tmp_path: Path, checkpoint_writer) -> None:
    from sned.predictors import evaluate_trials as E
    from sned.supernet.checkpoint import WEIGHTS, read_state, resolve_checkpoint

    checkpoint_writer(tmp_path / "run")
    ckpt = resolve_checkpoint(tmp_path / "run")
    extractor = DomainFeatureExtractor(features_dir, batch_size=2)
    space = load_space("tiny")
    real = E.real_features(data_dir, 32, space.frames, 4, 0, extractor, tmp_path / "cache", progress=False)
    assert real.shape == (4, 16) and (tmp_path / "cache" / f"real-32-domain-{extractor.weights_sha256[:12]}.npz").is_file()
    settings = E.TrialSettings(str(ckpt), read_state(ckpt)["files"][WEIGHTS], True, "v", videos=2, steps=1, eta=0.0,
                               batch_size=2, i3d=None, extractor=extractor.name,
                               extractor_sha256=extractor.weights_sha256, features=str(features_dir))
    E._WORKER_CACHE.clear()
    with pytest.warns(RankDeficientCovarianceWarning):
        row = E.run_trial(E.TrialSpec.of(space.smallest(32), 0), settings, real)
    assert row["extractor"] == extractor.name and 1.0 <= row["inception_score"] <= 6.0
    assert [k[0] for k in E._WORKER_CACHE] == ["supernet", "domain"]
    E._WORKER_CACHE.clear()
