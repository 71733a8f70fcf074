"""Does class conditioning (and which guidance) help the default space generate its classes? Short 32 px runs.

    python benchmarks/conditioning_probe.py --data DATA [--steps 1200] [--variants uncond,cond,cond-patch2]
        [--guidance 1,2,4] [--out runs/conditioning-probe]

Each variant is tiny's space and recipe at 32 px only (batch 16, EMA 0.998 from step 200, a
200-step sampling warm-up), trained with ``sned-train`` for ``--steps`` steps on ``DATA`` (a
``sned data synth`` folder). ``uncond`` sets ``space.classes: 0``, ``cond`` keeps tiny's class
labels, ``cond-patch2`` also uses a 2x2 stem. For each it prints the wall time, the held-out loss of
the largest subnet (t = 50/200/500/800, in v units; conditional runs score with the true labels)
and, for every guidance scale, the bundled domain classifier's verdict on 24 DDIM samples of the
largest subnet (25 steps, seed 0): classes represented, and for conditional runs the share put in
the class asked for. Sample grids go to ``--out/<variant>-g<W>.gif``. Measured on a noisy 2-core VM.
"""

from __future__ import annotations

import argparse
import copy
import time
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

from sned.predictors.features import DomainFeatureExtractor
from sned.supernet.checkpoint import load_supernet
from sned.supernet.sample import class_labels, generate, to_uint8, video_grid
from sned.supernet.space import load_experiment
from sned.supernet.train import TrainSettings, read_validation, train
from sned.supernet.video_io import write_video


def _experiment(variant: str, steps: int) -> dict:
    experiment = copy.deepcopy(load_experiment("tiny")[0])
    space, recipe = experiment["space"], experiment["train"]
    space["resolutions"] = [32]
    if variant == "uncond":
        space["classes"] = 0
    elif variant == "cond-patch2":
        space["patch_size"] = 2
    elif variant != "cond":
        raise SystemExit(f"unknown variant {variant!r}; valid: uncond, cond, cond-patch2")
    recipe.update(steps=steps, image_steps=100, base_batch=16, max_batch=16, resolution_weights=[1.0],
                  lr_warmup_steps=100, ema_start=200, ema_decay=0.998, sampling_warmup_steps=200,
                  val_every=steps, checkpoint_every=max(200, steps // 4))
    experiment.pop("pipeline", None)
    experiment["name"] = f"probe-{variant}"
    return experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    bundled = Path(str(resources.files("sned.experiments") / "tiny" / "features"))
    parser.add_argument("--data", required=True, help="a `sned data synth` folder (600 videos for the README figures)")
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--variants", default="uncond,cond")
    parser.add_argument("--guidance", default="1,2,4")
    parser.add_argument("--features", default=str(bundled), help="a `sned features train` folder")
    parser.add_argument("--out", type=Path, default=Path("runs/conditioning-probe"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    extractor = DomainFeatureExtractor(args.features, device="cpu")
    names = list(extractor.card.classes)
    for variant in args.variants.split(","):
        path = args.out / f"{variant}.yaml"
        path.write_text(yaml.safe_dump(_experiment(variant, args.steps), sort_keys=False))
        run = args.out / variant
        began = time.perf_counter()
        train(TrainSettings(str(path), args.data, str(run), resume=run.exists(), progress=False))
        seconds = time.perf_counter() - began
        last = {r["t"]: r["loss"] for r in read_validation(run) if r["step"] == args.steps and r["subnet"] == "largest"}
        print(f"{variant}: {args.steps} steps in {seconds:.0f} s; held-out loss of the largest subnet "
              + ", ".join(f"t={t} {v:.4f}" for t, v in last.items()), flush=True)
        net, info = load_supernet(run)
        arch = net.space.largest(32)
        labels, asked = class_labels(net.space.spec.classes, info["class_names"], 24)
        for w in [float(g) for g in args.guidance.split(",")] if labels else [1.0]:
            videos = generate(net, arch, 24, 25, seed=0, prediction=info["config"]["prediction"], labels=labels,
                              guidance=w)
            write_video(args.out / f"{variant}-g{w:g}.gif", video_grid(to_uint8(videos), columns=6, scale=2))
            predicted = extractor.probabilities(videos).argmax(axis=1)
            hit = np.mean([names[p] == a for p, a in zip(predicted, asked, strict=True)]) if asked else float("nan")
            print(f"  guidance {w:g}: classes {len(set(predicted.tolist()))}/6, asked {hit:.2f}", flush=True)


if __name__ == "__main__":
    main()
