"""Fine-tuning runs in the store, trained by real worker processes: the fixed held-out split, the
one-click defaults, the dataset revision, and a run started from the full official-format D1
state dict (``../shared/reference/weights.py``) on a 3-class project, whose report lists exactly
the class-dependent tensors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from annotations import Store
from reference import official_state_dict
from training.defaults import finetune_defaults
from training.finetune import Overrides, dataset_revision, launch_worker, prepare_run, refresh_run
from training.init_weights import class_dependent_keys
from training.split import choose_splits
from training.synthetic import make_shapes_dataset


def reviewed_store(tmp_path: Path, num_images: int, size=(64, 64)) -> tuple[Store, int]:
    """A SQLite store with ``num_images`` synthetic 3-class images, all reviewed."""
    gt = make_shapes_dataset(tmp_path / "data", num_images, seed=5, size=size)
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    dataset = store.create_dataset("shapes", gt.parent / "images")
    store.import_coco(dataset, gt)
    for image in store.list_images(dataset):
        store.set_review_state(image.id, "reviewed")
    return store, dataset


def test_split_is_fixed_per_image_and_balanced() -> None:
    keys = {i: f"image-{i}.png" for i in range(1, 21)}
    first = choose_splits({i: keys[i] for i in range(1, 11)}, {})
    assert sum(s == "heldout" for s in first.values()) == 2
    more = choose_splits(keys, first)
    assert set(more) == set(range(11, 21))                       # old images keep their side
    assert sum(s == "heldout" for s in {**first, **more}.values()) == 4
    assert choose_splits({1: "a", 2: "b"}, {}) in ({1: "train", 2: "heldout"}, {1: "heldout", 2: "train"})
    # the choice follows the images, not the order they were reviewed in
    assert choose_splits(dict(reversed(list(keys.items()))), {}) == choose_splits(keys, {})


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
    assert run.status == "created" and run.parent_version == "v0" and len(run.report["heldout"]) == 2
    assert run.config["val_json"].endswith("heldout.json") and run.config["eval_at_start"] and run.config["keep_best"]
    splits = store.image_splits(dataset)
    again = store.training_run(prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny",
                                           work_dir=tmp_path))
    assert store.image_splits(dataset) == splits and again.report["heldout"] == run.report["heldout"]
    assert again.dataset_revision == run.dataset_revision       # same annotations, same revision
    image = store.list_images(dataset)[0]
    ann = store.annotations(image.id)[0]
    store.set_state(ann.id, "rejected")                          # one annotation less
    changed = store.training_run(prepare_run(store, dataset, parent_version="v0", parent_path=weights, preset="tiny",
                                             work_dir=tmp_path))
    assert changed.dataset_revision != run.dataset_revision
    train = json.loads(Path(run.config["train_json"]).read_text())
    held = json.loads(Path(run.config["val_json"]).read_text())
    assert dataset_revision(train, held) == run.dataset_revision
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
    assert "before" in run.report                                 # the starting model was measured


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
    for side in ("train", "heldout"):                             # whichever side image 3 took
        assert choose_splits({11: keys[11]}, {3: side}, assigned_keys=keys) == {11: side}
