"""`sned pipeline`: stages, markers, resume, and artifacts of the same schema as the bundled ones."""

import json
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sned.search.cli import main
from sned.search.pipeline import LATENT_STAGES, STAGES, PipelineConfig
from sned.supernet.base.errors import UserError

PIXEL_STAGES = [s for s in STAGES if s not in LATENT_STAGES]
TINY = Path(str(resources.files("sned.experiments") / "tiny.yaml"))


def test_pipeline_section_is_strict():
    assert PipelineConfig.from_experiment({"pipeline": {"seed": 3}}).seed == 3
    with pytest.raises(UserError, match="unknown key 'sed'"):
        PipelineConfig.from_experiment({"pipeline": {"sed": 3}})
    with pytest.raises(UserError, match="pipeline.eval_videos = 'many': expected int"):
        PipelineConfig.from_experiment({"pipeline": {"eval_videos": "many"}})


def test_pipeline_noise_floor_is_all_or_a_count():
    assert PipelineConfig().eval_noise_floor == "all"  # DESIGN: every subnet in two independent passes
    assert PipelineConfig.from_experiment({"pipeline": {"eval_noise_floor": "all"}}).eval_noise_floor == "all"
    assert PipelineConfig.from_experiment({"pipeline": {"eval_noise_floor": 3}}).eval_noise_floor == 3
    for bad in ("some", -1, True, 2.5):
        with pytest.raises(UserError, match=r"pipeline.eval_noise_floor = .*expected 'all' or an integer >= 0"):
            PipelineConfig.from_experiment({"pipeline": {"eval_noise_floor": bad}})


def test_unknown_stage_is_one_line(capsys, tmp_path):
    assert main(["pipeline", "tiny", "--stages", "data,trian", "--out", str(tmp_path)]) == 2
    assert "unknown stage(s) ['trian']" in capsys.readouterr().err


@pytest.mark.slow
def test_pipeline_from_scratch_resumes_and_matches_the_bundled_schema(tmp_path, capsys):
    """A shrunken tiny (same space): every stage runs; a second run skips them all."""
    config = yaml.safe_load(TINY.read_text())
    config["train"].update(steps=6, image_steps=2, sampling_warmup_steps=2, checkpoint_every=3, max_batch=4)
    config["pipeline"] = {"seed": 0, "data_videos": 6, "data_frames": 8, "data_size": 32, "latency_repeats": 2,
                          "latency_validate": 4, "eval_subnets": 4, "eval_videos": 2, "eval_steps": 2,
                          "eval_noise_floor": 0, "fit_folds": 2, "fit_inner_folds": 2, "search_budget_ms": 400.0,
                          "features_epochs": 1}
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["pipeline", str(experiment), "--out", str(out), "--quiet"]) == 0
    for stage in PIXEL_STAGES:
        assert (out / "stages" / f"{stage}.json").exists(), stage
    # same schema and space as the bundled artifacts
    bundled = Path(str(resources.files("sned.experiments") / "tiny"))
    for name in ("fvd.parquet", "latency-cpu.parquet"):
        new, old = pd.read_parquet(out / name), pd.read_parquet(bundled / name)
        assert list(new.columns) == list(old.columns) and (new.dtypes == old.dtypes).all(), name
    predictor = json.loads((out / "stages" / "fit.json").read_text())
    assert predictor["space_hash"] == json.loads((bundled / "provenance.json").read_text())[
        "predictor.npz"]["space_hash"]
    assert (out / "search" / "report.html").exists()
    capsys.readouterr()
    # a second run finds every stage done and redoes nothing (e.g. after a kill in a later stage)
    assert main(["pipeline", str(experiment), "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("done earlier") == len(PIXEL_STAGES)


def test_a_pixel_experiment_has_no_autoencoder_stages(capsys, tmp_path):
    assert main(["pipeline", "tiny", "--stages", "data,vae", "--out", str(tmp_path)]) == 2
    assert "no vae, latents stages" in capsys.readouterr().err


@pytest.mark.slow
def test_latent_pipeline_trains_its_autoencoder_caches_latents_and_budgets_the_decoder(tmp_path, capsys):
    """A shrunken tiny-latent: vae -> latents -> train -> latency (+ decoder) -> ... -> search with --steps."""
    config = yaml.safe_load((TINY.parent / "tiny-latent.yaml").read_text())
    config["train"].update(steps=4, image_steps=1, sampling_warmup_steps=2, checkpoint_every=2, base_batch=2, max_batch=2,
                           val_videos=0)
    config["pipeline"] = {"seed": 0, "data_videos": 12, "data_frames": 8, "data_size": 64, "vae_steps": 3,
                          "latency_repeats": 2, "latency_validate": 4, "eval_subnets": 6, "eval_videos": 2,
                          "eval_steps": 2, "eval_noise_floor": 0, "fit_folds": 2, "fit_inner_folds": 2,
                          "search_budget_ms": 5000.0, "search_steps": 4, "features_epochs": 1}
    experiment = tmp_path / "tiny-latent.yaml"
    experiment.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    assert main(["pipeline", str(experiment), "--out", str(out), "--quiet"]) == 0
    for stage in STAGES:
        assert (out / "stages" / f"{stage}.json").exists(), stage
    assert json.loads((out / "latents" / "manifest.json").read_text())["complete"]
    from sned.predictors.latency import LatencyTable

    table = LatencyTable.load(out / "latency-cpu.parquet")
    assert table.decoder_ms(32) > 0 and table.decoder_ms(64) > table.decoder_ms(32) * 0.5
    settings = json.loads((out / "search" / "settings.json").read_text())
    assert settings["config"]["steps"] == 4 and settings["stats"]["64"]["decoder_ms"] == table.decoder_ms(64)
