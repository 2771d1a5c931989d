"""Fine-tuning runs in the store, trained by real worker processes: the fixed three-way split, the
one-click defaults, no training decision reading the test split, before = the starting model as it
is, the better / not-better verdict, the dataset revision, and a run started from the full official-format D1
state dict (``../shared/reference/weights.py``) on a 3-class project, whose report lists exactly
the class-dependent tensors."""
from __future__ import annotations

import functools
import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from annotations import Store
from app.demo import DEMO_WEIGHTS
from reference import official_state_dict
from training.defaults import finetune_defaults
from training.finetune import Overrides, dataset_revision, launch_worker, prepare_run, refresh_run
from training.init_weights import class_dependent_keys
from training import worker
from training.bootstrap import evaluated, images_to_decide
from training.data import load_coco
from training.evaluate import evaluate
from training.split import MIN_TEST_IMAGES, choose_splits, reviewed_images_for
from training.synthetic import SHIFTED_SCENE, make_shapes_dataset
from training import verdict
from training.verdict import Verdict


def reviewed_store(tmp_path: Path, num_images: int, size=(64, 64)) -> tuple[Store, int]:
    """A SQLite store with ``num_images`` synthetic 3-class images, all reviewed."""
    gt = make_shapes_dataset(tmp_path / "data", num_images, seed=5, size=size)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    dataset = store.create_dataset("shapes", gt.parent / "images")
    store.import_coco(dataset, gt)
    for image in store.list_images(dataset):
        store.set_review_state(image.id, "reviewed")
    return store, dataset


def test_split_is_three_way_fixed_per_image_and_balanced() -> None:
    keys = {i: f"image-{i}.png" for i in range(1, 21)}
    first = choose_splits({i: keys[i] for i in range(1, 11)}, {})
    assert Counter(first.values()) == {"test": 3, "val": 2, "train": 5}
    more = choose_splits(keys, first)
    assert set(more) == set(range(11, 21))                       # old images keep their side
    assert Counter({**first, **more}.values()) == {"test": 6, "val": 3, "train": 11}
    assert sorted(choose_splits({1: "a", 2: "b"}, {}).values()) == ["test", "train"]   # no validation yet
    assert sorted(choose_splits({1: "a", 2: "b", 3: "c"}, {}).values()) == ["test", "train", "val"]
    # the choice follows the images, not the order they were reviewed in
    assert choose_splits(dict(reversed(list(keys.items()))), {}) == choose_splits(keys, {})
    assert choose_splits(dict(reversed(list(keys.items()))), first) == more


def test_a_store_split_before_the_three_way_split_keeps_its_images() -> None:
    """Migration 0005 made the old held-out images test images: they stay there and the old
    training images stay training images; new images fill validation and test first."""
    old = {i: ("test" if i in (1, 2) else "train") for i in range(1, 11)}   # 20 % held out, as before
    keys = {i: f"image-{i}.png" for i in range(1, 15)}
    new = choose_splits(keys, old)
    assert set(new) == {11, 12, 13, 14}
    assert Counter(new.values()) == {"val": 2, "test": 2}         # 4 of 14 test, 2 validation


def test_defaults_scale_with_images_and_model() -> None:
    small, large = finetune_defaults(10, "tiny"), finetune_defaults(500, "tiny")
    assert small.max_iters >= 60 and small.epochs > large.epochs
    assert large.max_iters <= 3000 and large.eval_period * 10 <= large.max_iters + 10
    big = finetune_defaults(100, "D1-R50-576")
    assert big.lr == 1e-4 and big.backbone_lr_multiplier == 0.1 and big.batch_size == 4
    assert small.early_stop_patience == 4
    with pytest.raises(ValueError):
        finetune_defaults(0, "tiny")


def test_prepare_run_records_split_revision_and_config(tmp_path: Path) -> None:
    store, dataset = reviewed_store(tmp_path, 10)
    weights = tmp_path / "w.safetensors"
    run_id = prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny", work_dir=tmp_path)
    run = store.training_run(run_id)
    assert run.status == "created" and run.parent_version == "v0"
    assert (len(run.report["train"]), len(run.report["val"]), len(run.report["test"])) == (5, 2, 3)
    assert run.config["val_json"].endswith("val.json") and run.config["eval_at_start"] and run.config["keep_best"]
    assert "test.json" not in json.dumps(run.config)              # the trainer never learns where the test split is
    splits = store.image_splits(dataset)
    again = store.training_run(prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny",
                                           work_dir=tmp_path))
    assert store.image_splits(dataset) == splits and again.report["test"] == run.report["test"]
    assert again.dataset_revision == run.dataset_revision       # same annotations, same revision
    image = store.list_images(dataset)[0]
    ann = store.annotations(image.id)[0]
    store.set_state(ann.id, "rejected")                          # one annotation less
    changed = store.training_run(prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny",
                                             work_dir=tmp_path))
    assert changed.dataset_revision != run.dataset_revision
    parts = {side: json.loads((Path(run.path) / f"{side}.json").read_text()) for side in ("train", "val", "test")}
    assert dataset_revision(parts) == run.dataset_revision
    # settings the person typed are what runs, and what the start message says
    typed = store.training_run(prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny",
                                           work_dir=tmp_path, overrides=Overrides(max_iters=20, batch_size=2)))
    assert (typed.config["max_iters"], typed.config["batch_size"]) == (20, 2)
    assert typed.report["defaults"].startswith("20 iterations of 2 images ("), typed.report["defaults"]


def test_too_few_reviewed_images_is_refused(tmp_path: Path) -> None:
    store, dataset = reviewed_store(tmp_path, 1)
    with pytest.raises(ValueError, match="at least 2 reviewed images"):
        prepare_run(store, dataset, parent_version="v0", parent_path="w", preset="tiny", work_dir=tmp_path)


@pytest.mark.slow
def test_run_from_the_official_d1_state_dict_on_3_classes(tmp_path: Path) -> None:
    path = tmp_path / "fastinst_R50_ppm-fpn_x1_576.pth"
    torch.save({"model": official_state_dict("fastinst_R50_ppm-fpn_x1_576")}, path)
    store, dataset = reviewed_store(tmp_path, 2)
    store.record_model_version("fastinst_R50_ppm-fpn_x1_576", str(path))
    run_id = prepare_run(store, dataset, parent_version="fastinst_R50_ppm-fpn_x1_576", parent_path=path,
                         preset="D1-R50-576", work_dir=tmp_path, device="cpu",
                         overrides=Overrides(max_iters=1, batch_size=1))
    worker = launch_worker(store, run_id)
    worker.wait(timeout=600)
    run = refresh_run(store, run_id)
    assert run.status == "done", (run.message, (Path(run.path) / "worker.log").read_text()[-3000:])
    assert run.iteration == 1
    init = run.report["init_weights"]
    assert init["how"] == "partial"
    skipped = {line.split()[1].rstrip(":") for line in init["notes"] if line.startswith("skipped ")}
    assert {name for name in skipped if not name.endswith("criterion.empty_weight")} == \
        class_dependent_keys("D1-R50-576", 3)
    assert run.metrics["test"]["before"]["segm/AP"]["images"] == 1   # the starting model was measured on the test image


def test_cli_refuses_unknown_dataset_and_version(tmp_path: Path, capsys) -> None:
    from training.worker import main
    store, dataset = reviewed_store(tmp_path, 2)
    url = store.url
    assert main(["--db", url, "--dataset", "nope", "--start-from", "v"]) == 2
    assert "no dataset called 'nope'" in capsys.readouterr().err
    assert main(["--db", url, "--dataset", "shapes", "--start-from", "v"]) == 2
    assert "no registered model version 'v'" in capsys.readouterr().err
    assert main(["--db", url]) == 2


def test_the_same_picture_under_two_names_is_never_on_both_sides() -> None:
    """Two names, one content hash: the pair always shares a side, whether both are new, or one
    had its side before the other was reviewed."""
    keys = {i: f"hash-{i}" for i in range(1, 11)}
    keys[11] = keys[3]                                            # image 11 is image 3 under another name
    together = choose_splits(keys, {})
    assert together[11] == together[3]
    first = choose_splits({i: keys[i] for i in range(1, 11)}, {})
    later = choose_splits({11: keys[11]}, first, assigned_keys=keys)
    assert later == {11: first[3]}
    for side in ("train", "val", "test"):                         # whichever side image 3 took
        assert choose_splits({11: keys[11]}, {3: side}, assigned_keys=keys) == {11: side}


# ----------------------------------------------------------------- honest numbers of a real run

def shifted_store(tmp_path: Path, num_images: int = 10) -> tuple[Store, int]:
    """A store of shifted-domain images (the scenario's: new colours and a new class, crosses),
    all reviewed with their ground truth, and the demo model registered."""
    gt = make_shapes_dataset(tmp_path / "data", num_images, seed=31, size=(96, 96), config=SHIFTED_SCENE)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    dataset = store.create_dataset("shifted", gt.parent / "images")
    store.import_coco(dataset, gt)
    for image in store.list_images(dataset):
        store.set_review_state(image.id, "reviewed")
    store.record_model_version("demo", str(DEMO_WEIGHTS))
    return store, dataset


def train_in_process(store: Store, dataset: int, tmp_path: Path) -> Any:
    """A short run of the demo model, evaluated on validation every 2 iterations with early
    stopping after 2 evaluations without a better AP, trained by the worker's own ``run``."""
    run_id = prepare_run(store, dataset, parent_version="demo", parent_path=DEMO_WEIGHTS, preset="tiny",
                         work_dir=tmp_path, device="cpu", overrides=Overrides(max_iters=10, batch_size=2))
    config = {**store.training_run(run_id).config, "eval_period": 2, "checkpoint_period": 2,
              "early_stop_patience": 2, "num_threads": 1}
    store.update_training_run(run_id, config=config)
    assert worker.run(store, run_id) == 0
    return store.training_run(run_id)


def decisions(store: Store, run: Any) -> dict:
    """Everything the run chose: its validation evaluations, the best iteration, whether and when
    it stopped early, and the chosen model's tensors (digest; the files' metadata name the folder)."""
    out = Path(run.path)
    end = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    digest = hashlib.sha256()
    tensors = load_file(str(out / "model_best.safetensors"))
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    return {"evals": [(p.iteration, p.values) for p in store.training_metrics(run.id, "eval")],
            "best": run.report["best"], "early_stopped": end["early_stopped"], "best_iteration": end["best_iteration"],
            "iterations": run.iteration, "chosen": digest.hexdigest(), "version": bool(run.model_version)}


@pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="the shipped demo model is needed")
def test_no_training_decision_reads_the_test_split(tmp_path: Path) -> None:
    """The same run twice, the second after a test image's annotations were replaced by garbage:
    every evaluation on validation, the best iteration, the early stop and the chosen model are
    identical; only the reported test figures change. "Before" is the demo model as it is: its
    AP equals the project's evaluator's on the test file, and the class it does not know scores 0."""
    store, dataset = shifted_store(tmp_path)
    first = train_in_process(store, dataset, tmp_path / "a")
    splits = store.image_splits(dataset)
    target = next(i for i, s in sorted(splits.items()) if s == "test")
    for ann in store.annotations(target):
        store.set_state(ann.id, "rejected")
    garbage = np.zeros((96, 96), bool)
    garbage[3:40:2, 10:90] = True                                   # stripes no model would find
    store.add_annotation(target, garbage, store.categories(dataset)[0].id)
    second = train_in_process(store, dataset, tmp_path / "b")
    assert store.image_splits(dataset) == splits and second.dataset_revision != first.dataset_revision
    assert decisions(store, second) == decisions(store, first)
    assert second.metrics["test"]["before"] != first.metrics["test"]["before"]     # the test split was read, to report
    before = first.metrics["test"]["before"]
    oracle = evaluate(DEMO_WEIGHTS, Path(first.path) / "test.json", store.dataset(dataset).image_root, device="cpu",
                      progress=False)
    assert before["segm/AP"]["value"] == pytest.approx(oracle["segm/AP"])
    assert before["segm/AP-cross"]["objects"] > 0 and before["segm/AP-cross"]["value"] == 0.0
    assert before["segm/AP"]["images"] == len(first.report["test"]) == 3


def perfect_results(coco: Any, image_ids: list[int]) -> list[dict]:
    """The ground truth of ``image_ids`` as detections of score 1."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
             "score": 1.0} for a in coco.dataset["annotations"] if a["image_id"] in image_ids]


@pytest.fixture(scope="module")
def ground_truth(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_coco(make_shapes_dataset(tmp_path_factory.mktemp("verdict"), 8, seed=3, size=(48, 48)))


def test_verdict_better_only_when_the_gain_interval_excludes_zero(ground_truth) -> None:
    coco = ground_truth
    decide = functools.partial(verdict.decide, samples=200)
    ids = sorted(coco.getImgIds())
    nothing = evaluated(coco, [], ids)
    better = decide(nothing, evaluated(coco, perfect_results(coco, ids), ids))
    assert better.better and better.gain.low > 0 and better.sentence.startswith("better: mask AP gain +100.0")
    assert better.after["segm/AP"].value == 100.0 and better.before["segm/AP"].value == 0.0
    few = ids[:MIN_TEST_IMAGES - 1]                                 # perfect on every test image, but too few
    lucky = decide(evaluated(coco, [], few), evaluated(coco, perfect_results(coco, few), few))
    assert not lucky.better and lucky.gain.low > 0
    assert f"with only {len(few)} test images even a model better on every one of them could be luck" in lucky.sentence
    assert f"review about {reviewed_images_for(1)} more images" in lucky.sentence
    same = evaluated(coco, perfect_results(coco, ids[:4]), ids)
    tie = decide(same, same)
    assert not tie.better
    assert "cannot be told from noise on 8 test images, and the two models score the same" in tie.sentence
    mixed = decide(evaluated(coco, perfect_results(coco, ids[:5]), ids),
                   evaluated(coco, perfect_results(coco, ids[3:]), ids))
    needed = images_to_decide(mixed.gain)
    assert not mixed.better and mixed.gain.low < 0 < mixed.gain.high
    assert (f"cannot be told from noise on 8 test images; about {needed} test images would likely decide it, that is "
            f"about {reviewed_images_for(needed - 8)} more reviewed images") in mixed.sentence
    worse = decide(evaluated(coco, perfect_results(coco, ids), ids), nothing)
    assert not worse.better and worse.sentence.startswith("worse: mask AP gain -100.0")
    assert Verdict.from_dict(mixed.to_dict()) == mixed
