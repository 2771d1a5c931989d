"""Fine-tuning the demo model from a few dozen corrected images, scored on unseen images.

For each shift of the domain (made by :mod:`training.synthetic`) and each number of corrected
images, the demo model (``app/assets/demo_model.safetensors``, the ``tiny`` preset) is fine-tuned
with the studio's one-click settings (:meth:`training.defaults.FineTuneDefaults.train_fields`);
the generator's ground truth stands in for the person's corrections. The corrected images are
split 80/20 by the SHA-256 of their pixels into training and validation (early stopping and the
best checkpoint); each shift is scored on its own 200 images of another generator seed, which
choose nothing. Mask AP with pycocotools (:mod:`training.evaluate`) and 95% bootstrap intervals
over the test images (:mod:`training.bootstrap`): before (the demo model as it is: a class it does
not know scores 0), after, the paired gain, per class. ``--ablations`` adds, per run, a row with
one recipe change undone and the paired gain the change brings.

    .venv/bin/python benchmarks/bench_finetune.py                         # every shift, 10/25/50 images
    .venv/bin/python benchmarks/bench_finetune.py --shifts new-class --sizes 25 --ablations copy-paste
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.load import load_predictor  # noqa: E402
from training.bootstrap import SAMPLES, Interval, ap_intervals, evaluated, paired_gain  # noqa: E402
from training.data import CocoInstances  # noqa: E402
from training.defaults import ABLATIONS, finetune_defaults  # noqa: E402
from training.evaluate import category_ids_for, collect_results  # noqa: E402
from training.synthetic import SHAPE_CLASSES, SHIFTED_SCENE, SceneConfig, make_shapes_dataset  # noqa: E402
from training.trainer import TrainConfig, train  # noqa: E402

DEMO_MODEL = REPO / "app" / "assets" / "demo_model.safetensors"
SIZE = (128, 128)
TEST_IMAGES, CORRECTED_SEED, TEST_SEED = 200, 101, 202
DEMO_HUES, DEMO_CLASSES = SceneConfig().class_hues, SHAPE_CLASSES
PURPLE = (0.8, 0.92)
SMALL_CLUTTERED = dict(min_objects=4, max_objects=9, min_radius=0.08, max_radius=0.17, flat_background_prob=0.0,
                       background_strength=(0.4, 0.8))
SHIFTS: Dict[str, SceneConfig] = {
    "in-domain": SceneConfig(),                                               # the demo model's own scenes
    "colours": SceneConfig(class_hues=(DEMO_HUES[2], DEMO_HUES[0], DEMO_HUES[1])),   # each class another's hue
    "scale-clutter": SceneConfig(**SMALL_CLUTTERED),                          # smaller, more, on busy backgrounds
    "texture": SceneConfig(flat_background_prob=0.0, background_strength=(0.5, 0.9), texture_strength=(0.3, 0.6),
                           flat_object_prob=0.1, max_noise=10.0),
    "new-class": SceneConfig(classes=SHAPE_CLASSES + ("cross",), class_hues=DEMO_HUES + (PURPLE,)),
    "mix": dataclasses.replace(SHIFTED_SCENE, **SMALL_CLUTTERED),            # all of the above at once
}


def pixel_hash(path: Path) -> int:
    """The first 8 bytes of the SHA-256 of an image file, as an integer."""
    return int(hashlib.sha256(path.read_bytes()).hexdigest()[:16], 16)


def split_corrected(coco: dict, image_dir: Path, count: int, out: Path) -> Tuple[Path, Path]:
    """The first ``count`` corrected images, split 80/20 (by pixel hash, at least one image on each
    side) into ``out/train.json`` and ``out/val.json``."""
    images = coco["images"][:count]
    ranked = sorted(images, key=lambda im: pixel_hash(image_dir / im["file_name"]))
    val_ids = {im["id"] for im in ranked[:max(1, round(0.2 * count))]}
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, keep in (("train", lambda i: i not in val_ids), ("val", lambda i: i in val_ids)):
        part = {**coco, "images": [im for im in images if keep(im["id"])],
                "annotations": [a for a in coco["annotations"] if keep(a["image_id"])
                                and a["image_id"] in {im["id"] for im in images}]}
        paths.append(out / f"{name}.json")
        paths[-1].write_text(json.dumps(part))
    return paths[0], paths[1]


def one_click_config(train_json: Path, val_json: Path, image_root: Path, output_dir: Path, num_train: int,
                     threads: int, overrides: Dict[str, object]) -> TrainConfig:
    """The TrainConfig of the studio's one click (the fields :mod:`training.finetune` sets), with
    an ablation's ``overrides``."""
    d = finetune_defaults(num_train, "tiny")
    config = TrainConfig(
        model="fastinst", train_json=str(train_json), image_root=str(image_root), val_json=str(val_json),
        val_image_root=str(image_root), preset="tiny", init_weights=str(DEMO_MODEL), output_dir=str(output_dir),
        device="cpu", num_workers=0, num_threads=threads, progress_bar=False, eval_batch_size=4, eval_at_start=True,
        keep_best=True, seed=0, resume=False, keep_empty_images=True, **d.train_fields())
    return dataclasses.replace(config, **overrides)


class TestSet:
    """One shift's unseen images, scored with pycocotools."""

    def __init__(self, json_path: Path) -> None:
        self.dataset = CocoInstances(json_path, json_path.parent / "images", keep_empty=True)
        self.names = {c: self.dataset.coco.cats[c]["name"] for c in self.dataset.category_ids}

    def evaluate(self, weights: Path, threads: int) -> object:
        """``COCOeval`` (after ``evaluate()``) of a checkpoint on every test image."""
        torch.set_num_threads(threads)
        predictor = load_predictor(weights, device="cpu", explain=False).predictor
        results = collect_results(predictor, self.dataset, category_ids_for(predictor.class_names, self.dataset),
                                  batch_size=8, progress=False)
        return evaluated(self.dataset.coco, results, self.dataset.image_ids)


def scored(test: TestSet, before: object, after: object, samples: int) -> Dict[str, object]:
    """AP intervals of ``after``, and its paired gain over ``before``: overall and for each class
    the demo model does not know (the other classes' gains would cost a bootstrap each)."""
    after_ap = ap_intervals(after, test.names, samples=samples)
    out: Dict[str, object] = {"after": {k: v.to_dict() for k, v in after_ap.items()},
                              "gain": {"segm/AP": paired_gain(before, after, samples=samples).to_dict()}}
    for cat, name in test.names.items():
        if name not in DEMO_CLASSES:
            out["gain"][f"segm/AP-{name}"] = paired_gain(before, after, category=cat, samples=samples).to_dict()
    return out


def run_one(shift: str, size: int, ablation: Optional[str], data: Path, work: Path, test: TestSet, before: object,
            threads: int, explored: Dict[str, object], samples: int) -> Dict[str, object]:
    """Fine-tune on ``size`` corrected images of ``shift`` (with ``ablation`` undone) and score it."""
    coco = json.loads((data / "corrected" / "annotations.json").read_text())
    run_dir = work / f"{shift}-{size}-{ablation or 'recipe'}"
    shutil.rmtree(run_dir, ignore_errors=True)
    train_json, val_json = split_corrected(coco, data / "corrected" / "images", size, run_dir / "split")
    num_train = len(json.loads(train_json.read_text())["images"])
    config = one_click_config(train_json, val_json, data / "corrected" / "images", run_dir, num_train, threads,
                              {**explored, **(ABLATIONS[ablation] if ablation else {})})
    start = time.perf_counter()
    weights = train(config)
    train_s = time.perf_counter() - start
    after = test.evaluate(weights, threads)
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last = log[-1]
    return {"shift": shift, "images": size, "train_images": num_train, "ablation": ablation,
            "iterations": config.max_iters, "ran_iterations": max(r.get("iteration", 0) for r in log),
            "best_iteration": last.get("best_iteration"), "train_s": train_s, "after_eval": after,
            **scored(test, before, after, samples)}


def text(d: Dict[str, object], signed: bool = False) -> str:
    return Interval.from_dict(d).text(signed)


def report_line(row: Dict[str, object], before: Dict[str, Dict[str, object]]) -> str:
    what = f"{row['shift']:>13} {row['images']:>3} img ({row['train_images']} train)"
    how = "recipe" if not row["ablation"] else f"without {row['ablation']}"
    lines = [f"{what} {how:<22} AP {before['segm/AP']['value']:.1f} -> {text(row['after']['segm/AP'])}; "
             f"gain {text(row['gain']['segm/AP'], True)}; {row['ran_iterations']}/{row['iterations']} it "
             f"(best {row['best_iteration']}), {row['train_s'] / 60:.1f} min"]
    for key, value in row["after"].items():
        if key != "segm/AP":
            b = before[key]["value"]
            gain = f"; gain {text(row['gain'][key], True)}" if key in row["gain"] else ""
            lines.append(f"{'':>40}{key[8:]:>10}: {'—' if b is None else f'{b:.1f}'} -> {text(value)}{gain}")
    return "\n".join(lines)


def summary_table(rows: List[Dict[str, object]], befores: Dict[str, Dict[str, Dict[str, object]]]) -> str:
    """A Markdown table of every run: mask AP before and after with intervals, the paired gain,
    the gain of each class the demo model does not know, iterations and training minutes."""
    def cell(d: Dict[str, object], signed: bool = False) -> str:
        fmt = "{:+.1f}" if signed else "{:.1f}"
        return "—" if d["value"] is None else " ".join([fmt.format(d["value"]),
                                                         f"[{fmt.format(d['low'])}, {fmt.format(d['high'])}]"])
    lines = ["| shift | corrected (train) | run | AP before | AP after | gain | new class gain | iterations | train min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        new = "; ".join(f"{k[8:]} {cell(v, True)}" for k, v in r["gain"].items() if k != "segm/AP") or "—"
        run = "recipe" if not r["ablation"] else f"without {r['ablation']}"
        lines.append(f"| {r['shift']} | {r['images']} ({r['train_images']}) | {run} | {cell(befores[r['shift']]['segm/AP'])} "
                     f"| {cell(r['after']['segm/AP'])} | {cell(r['gain']['segm/AP'], True)} | {new} "
                     f"| {r['ran_iterations']}/{r['iterations']} | {r['train_s'] / 60:.1f} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shifts", default=",".join(SHIFTS), help=f"comma-separated, of {', '.join(SHIFTS)}")
    p.add_argument("--sizes", default="10,25,50", help="numbers of corrected images (comma-separated)")
    p.add_argument("--ablations", default="", help=f"recipe changes to undo, one extra run each: {', '.join(ABLATIONS)}")
    p.add_argument("--ablation-sizes", default="25", help="the sizes the ablation rows run at")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainConfig field in every run (a Python literal), to explore a candidate")
    p.add_argument("--samples", type=int, default=SAMPLES, help=f"bootstrap resamples per interval (default {SAMPLES})")
    p.add_argument("--threads", type=int, default=1, help="PyTorch CPU threads (1 is fastest on a shared 2-core box)")
    p.add_argument("--work-dir", default=None, help="keep data and runs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    a = p.parse_args(argv)
    shifts, sizes = a.shifts.split(","), [int(s) for s in a.sizes.split(",")]
    ablations = [x for x in a.ablations.split(",") if x]
    ablation_sizes = [int(s) for s in a.ablation_sizes.split(",")]
    for name, known in [(n, SHIFTS) for n in shifts] + [(n, ABLATIONS) for n in ablations]:
        if name not in known:
            p.error(f"unknown {'shift' if known is SHIFTS else 'ablation'} {name!r}; known: {', '.join(known)}")
    explored = {k: ast.literal_eval(v) for k, v in (item.split("=", 1) for item in a.set)}
    torch.set_num_threads(a.threads)
    work = Path(a.work_dir) if a.work_dir else Path(tempfile.mkdtemp(prefix="bench_finetune_"))
    rows: List[Dict[str, object]] = []
    befores: Dict[str, object] = {}
    for shift in shifts:
        data = work / "data" / shift
        scene = SHIFTS[shift]
        make_shapes_dataset(data / "corrected", max(sizes), CORRECTED_SEED, size=SIZE, config=scene)
        test = TestSet(make_shapes_dataset(data / "test", TEST_IMAGES, TEST_SEED, size=SIZE, config=scene))
        before_eval = test.evaluate(DEMO_MODEL, a.threads)
        before = {k: v.to_dict() for k, v in ap_intervals(before_eval, test.names, samples=a.samples).items()}
        befores[shift] = before
        print(f"{shift}: before (the demo model) AP {text(before['segm/AP'])}", flush=True)
        for size in sizes:
            runs = [None] + (ablations if size in ablation_sizes else [])
            by_ablation = {}
            for ablation in runs:
                row = run_one(shift, size, ablation, data, work / "runs", test, before_eval, a.threads,
                              explored, a.samples)
                if ablation:   # what the change brings: the recipe against the recipe without it
                    row["change_gain"] = paired_gain(row["after_eval"], by_ablation[None]["after_eval"],
                                                     samples=a.samples).to_dict()
                by_ablation[ablation] = row
                print(report_line(row, before), flush=True)
                if ablation:
                    print(f"{'':>40}{ablation} brings {text(row['change_gain'], True)}", flush=True)
                if a.json:   # after every run: a stopped benchmark keeps what it measured
                    done = rows + list(by_ablation.values())
                    Path(a.json).write_text(json.dumps({
                        "before": befores, "runs": [{k: v for k, v in r.items() if k != "after_eval"} for r in done],
                        "threads": a.threads, "set": a.set, "samples": a.samples, "test_images": TEST_IMAGES}, indent=1))
            rows += by_ablation.values()
    print(summary_table(rows, befores))
    if not a.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
