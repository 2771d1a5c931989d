"""Files that real tools write and that broke an entry point (issue 20, "Files"): non-finite
numbers, an id two images claim, path spellings of one file, truncated images, ids of any size,
repeated annotation ids, a dataset where results belong. Each kind goes through every entry point
it reaches: the store's import and export, ``launch.py --coco/--images`` (``open_project``, what
launch.py runs), the studio's COCO tab (``Project.import_coco``/``export_coco``), the training
loader and ``training.train``, ``training.evaluate`` and ``python -m fastinst predict``.
pycocotools decodes the exported masks."""
from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from annotations import CocoFormatError, Store
from training.data import CocoInstances
from training.evaluate import evaluate_results

from test_app_support import model_weights

pytest_plugins = ["conftest_pg"]

SQUARE = [[2, 2, 10, 2, 10, 8, 2, 8]]          # 8x6 = 48 px on a 32x24 image
OTHER = [[14, 10, 28, 10, 28, 20, 14, 20]]    # 14x10 = 140 px
TRIANGLE = [[20, 2, 30, 2, 30, 6]]


def area(polygons: list) -> int:
    """pycocotools' area of polygons on the 32x24 test image."""
    return int(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons, 24, 32))))


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (32, 24), fmt: str = "PNG") -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def document(images: list, annotations: list, **extra) -> dict:
    return {"images": images, "categories": [{"id": 1, "name": "part"}], "annotations": annotations, **extra}


def image(image_id, file_name: str, **extra) -> dict:
    return {"id": image_id, "file_name": file_name, "width": 32, "height": 24, **extra}


def ann(ann_id, image_id, segmentation=SQUARE, **extra) -> dict:
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "segmentation": segmentation, "iscrowd": 0,
            **extra}


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))    # allow_nan: as Python's json (and many tools) write it
    return path


def standard_json(path: Path):
    """The file parsed as RFC 8259 JSON (what a browser's JSON.parse reads): NaN/Infinity refused."""
    def refuse(token: str):
        raise AssertionError(f"{path.name} holds the non-standard token {token}")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture
def sqlite_store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'studio.db'}") as s:
        yield s


def open_studio(images: Path, coco: Path | None, data: Path):
    """What ``launch.py --images IMAGES [--coco COCO]`` opens, with everything it printed."""
    from app.config import StudioConfig
    from app.startup import open_project
    log: list[str] = []
    config = StudioConfig(images=images, coco=coco, weights=model_weights(data.parent), device="cpu", data_dir=data)
    return open_project(config, log=log.append), log


def store_masks(store: Store, dataset: int) -> dict[str, list[int]]:
    """file name -> sorted mask areas of its annotations."""
    return {i.file_name: sorted(int(a.mask.sum()) for a in store.annotations(i.id)) for i in store.list_images(dataset)}


def loader_masks(dataset: CocoInstances) -> dict[str, list[int]]:
    return {dataset.coco.imgs[i]["file_name"]: sorted(int(m.sum()) for m in dataset.load(k)["masks"])
            for k, i in enumerate(dataset.image_ids)}


# ------------------------------------------------------------------------------ non-finite numbers


def non_finite_file(folder: Path) -> Path:
    write_image(folder / "images" / "a.png")
    data = document([image(1, "a.png", meta={"gps": [1.5, float("-inf")], "camera": "c3"})],
                    [ann(1, 1, bbox=[float("nan")] * 4, area=float("inf")),
                     ann(2, 1, OTHER, attributes={"occluded": False, "scores": [{"track": float("nan")}]}),
                     ann(3, 1, [[14, 10, float("nan"), 10, 28, 20, 14, 20]])],
                    info={"description": "x", "altitude": float("inf")})
    data["categories"][0]["weight"] = float("nan")
    return write_json(folder / "nan.json", data)


def check_non_finite_export(path: Path) -> None:
    exported = standard_json(path)
    assert sorted(a["area"] for a in exported["annotations"]) == [48, 140]
    attributes = next(a for a in exported["annotations"] if "attributes" in a)["attributes"]
    assert attributes == {"occluded": False, "scores": [{"track": None}]}
    assert exported["images"][0]["meta"] == {"gps": [1.5, None], "camera": "c3"}


NON_FINITE_LINES = [
    "repaired: nan.json (its info and licenses): info.altitude (inf) is not a finite number",
    "repaired: categories[0] in nan.json: weight (nan) is not a finite number",
    "repaired: images[0] (id 1) 'a.png' in nan.json: meta.gps[1] (-inf) is not a finite number",
    "repaired: annotations[0] (id 1) in nan.json: bbox [nan, nan, nan, nan] replaced by the mask's",
    "repaired: annotations[0] (id 1) in nan.json: area inf replaced by the mask's 48",
    "repaired: annotations[1] (id 2) in nan.json: attributes.scores[0].track (nan) is not a finite number",
    "refused: annotations[2] (id 3) in nan.json: segmentation polygon 0 has a non-finite coordinate",
]


def assert_lines(lines: list[str], expected: list[str]) -> None:
    for start in expected:
        assert any(line.startswith(start) for line in lines), (start, lines)


def test_non_finite_numbers_are_stored_as_null_named_and_every_export_is_standard_json(store: Store, tmp_path: Path):
    """Store import (SQLite and PostgreSQL, which refused NaN with a raw DataError), then export."""
    path = non_finite_file(tmp_path)
    dataset = store.create_dataset("nan", tmp_path / "images")
    report = store.import_coco(dataset, path)
    assert_lines(report.lines(), NON_FINITE_LINES)
    assert report.annotations_added == 2
    check_non_finite_export(store.export_coco(dataset, tmp_path / "out.json"))
    assert standard_json(store.export_coco(dataset, tmp_path / "all.json", include="all", polygons=True))


def test_non_finite_numbers_through_launch_the_coco_tab_and_training(tmp_path: Path):
    path = non_finite_file(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")   # launch.py --images --coco
    assert_lines(log, NON_FINITE_LINES)
    check_non_finite_export(project.export_coco(only_reviewed=False))
    upload = project.import_coco(path)                                      # the COCO tab, same file again
    assert "nan.json" in upload and "refused" in upload
    check_non_finite_export(project.export_coco(only_reviewed=False))
    training = CocoInstances(path, tmp_path / "images")
    assert_lines(training.report.lines(), NON_FINITE_LINES)
    assert loader_masks(training) == {"a.png": [48, 140]}


def test_a_store_that_already_holds_non_finite_values_exports_with_a_report(sqlite_store: Store, tmp_path: Path):
    """A store written before the import refused NaN (SQLite kept the NaN token in its JSON
    columns): the store's export and the studio's succeed, each value written as null and named."""
    write_image(tmp_path / "images" / "a.png")
    path = write_json(tmp_path / "clean.json", document([image(1, "a.png")], [ann(7, 1)]))
    dataset = sqlite_store.create_dataset("old", tmp_path / "images")
    sqlite_store.import_coco(dataset, path)
    with sqlite3.connect(tmp_path / "studio.db") as db:   # what the earlier version wrote
        db.execute("UPDATE annotations SET extra = ?", ('{"attributes": {"conf": NaN}}',))
        db.execute("UPDATE images SET extra = ?", ('{"meta": [Infinity]}',))
    repaired: list[str] = []
    exported = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json", repaired=repaired))
    assert exported["annotations"][0]["attributes"] == {"conf": None} and exported["images"][0]["meta"] == [None]
    assert repaired == ["image 1: meta[0] (inf) is not a finite number (JSON has none): written as null",
                        "annotation 7: attributes.conf (nan) is not a finite number (JSON has none): written as null"]
    from app.config import StudioConfig
    from app.startup import open_project
    config = StudioConfig(images=tmp_path / "images", weights=model_weights(tmp_path), device="cpu",
                          db=f"sqlite:///{tmp_path / 'studio.db'}", data_dir=tmp_path / "data")
    project = open_project(config, log=lambda line: None)
    studio_repaired: list[str] = []
    standard_json(project.export_coco(only_reviewed=False, repaired=studio_repaired))
    assert studio_repaired == repaired


# ------------------------------------------------------------------- one id, two images; one file, two ids


def shared_id_file(folder: Path) -> Path:
    for k, name in enumerate(("left.png", "right.png", "frame.png", "sub/deep.png")):
        write_image(folder / "images" / name, seed=k)
    data = document([image("cam", "left.png"), image("cam", "right.png"),          # one id, two files
                     image(8, "frame.png"), image(9, "./frame.png"), image(10, "sub/../frame.png"),
                     image(11, "sub\\deep.png"), image(12, "sub//deep.png"),
                     image(13, str((folder / "images" / "sub" / "deep.png").absolute())), image(12, "sub/deep.png")],
                    [ann(1, "cam"), ann(2, "cam", OTHER), ann(3, 8), ann(4, 9, OTHER), ann(5, 10, TRIANGLE),
                     ann(6, 11), ann(7, 12, OTHER), ann(8, 99), ann([8], 13, TRIANGLE)])
    return write_json(folder / "shared.json", data)


SHARED_EXPECTED = {"frame.png": sorted([48, area(TRIANGLE), 140]), "sub/deep.png": sorted([48, area(TRIANGLE), 140])}
SHARED_LINES = [
    "refused: images[0] (id 'cam') 'left.png' in shared.json: image id 'cam' is claimed by 2 entries of different "
    "files (images[0] 'left.png', images[1] 'right.png')",
    "refused: images[1] (id 'cam') 'right.png' in shared.json: image id 'cam' is claimed by 2",
    "repaired: images[3] (id 9) './frame.png' in shared.json: file_name './frame.png' is written 'frame.png'",
    "repaired: images[3] (id 9) './frame.png' in shared.json: the same file as images[2] (id 8) 'frame.png': one "
    "image; annotations with image_id 9 are read as on it",
    "repaired: images[4] (id 10) 'sub/../frame.png' in shared.json: the same file as images[2] (id 8)",
    "repaired: images[5] (id 11) 'sub\\deep.png' in shared.json: file_name 'sub\\\\deep.png' is written 'sub/deep.png'",
    "repaired: images[6] (id 12) 'sub//deep.png' in shared.json: the same file as images[5] (id 11) 'sub/deep.png'",
    "refused: annotations[0] (id 1) in shared.json: image id 'cam' is claimed by 2 entries of different files",
    "refused: annotations[1] (id 2) in shared.json: image id 'cam' is claimed by 2 entries",
    "refused: annotations[7] (id 8) in shared.json: image_id 99 is not in images",
    "repaired: images[7] (id 13) '/",
    "repaired: images[8] (id 12) 'sub/deep.png' in shared.json: an earlier entry has this id and file (images[5] "
    "(id 11) 'sub/deep.png' is that file): read as one image",
    "repaired: annotations[8] (id [8]) in shared.json: id [8] is no integer or string: given id",
]


def test_an_image_is_its_file_and_an_id_two_files_claim_attaches_nothing(sqlite_store: Store, tmp_path: Path):
    path = shared_id_file(tmp_path)
    dataset = sqlite_store.create_dataset("shared", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), SHARED_LINES)
    assert not any("frame.png" in line and "left out" in line for line in report.lines())
    assert store_masks(sqlite_store, dataset) == SHARED_EXPECTED
    assert report.images_added == 2 and report.annotations_added == 6
    assert any(line.startswith("repaired: images[7] (id 13)") and "the same file as images[5] (id 11)" in line
               for line in report.lines())
    exported = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json"))
    by_file = {i["id"]: i["file_name"] for i in exported["images"]}
    areas = sorted((by_file[a["image_id"]], int(mask_utils.area(a["segmentation"]))) for a in exported["annotations"])
    assert areas == sorted((name, area) for name, values in SHARED_EXPECTED.items() for area in values)


def test_an_image_is_its_file_through_launch_the_coco_tab_training_and_evaluation(tmp_path: Path):
    path = shared_id_file(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")
    assert_lines(log, SHARED_LINES)
    assert store_masks(project.store, project.dataset_id) == {**SHARED_EXPECTED, "left.png": [], "right.png": []}
    assert "left.png" in " ".join(log) and "added 2 images from" in " ".join(log)   # --images adds them, bare
    project.import_coco(path)          # the COCO tab: the same file adds nothing, moves nothing
    assert store_masks(project.store, project.dataset_id)["frame.png"] == SHARED_EXPECTED["frame.png"]
    training = CocoInstances(path, tmp_path / "images")
    assert training.report.lines() == project.store.import_coco(
        project.store.create_dataset("again", tmp_path / "images"), path).lines()[1:]
    assert loader_masks(training) == SHARED_EXPECTED
    assert evaluate_results(path, write_json(tmp_path / "none.json", []), tmp_path / "images")["report"][:-1] == \
        training.report.lines()


# ------------------------------------------------------------------------------------ ids of any size


def big_id_file(folder: Path) -> Path:
    write_image(folder / "images" / "a.png")
    write_image(folder / "images" / "b.png", seed=1)
    write_image(folder / "images" / "c.png", seed=2)
    data = {"images": [image(2**70, "a.png"), image(-4, "b.png"), image(True, "c.png")],
            "categories": [{"id": 2**40, "name": "part"}],
            "annotations": [{**ann(2**64 + 1, 2**70), "category_id": 2**40}, {**ann(-1, -4), "category_id": 2**40},
                            {**ann(3.0, True, OTHER), "category_id": 2**40}]}
    return write_json(folder / "big.json", data)


BIG_LINES = [
    "repaired: categories[0] in big.json: id 1099511627776 is beyond the largest id kept (2147483647): mapped to "
    "integer id 1",
    "repaired: images[0] (id 1180591620717411303424) 'a.png' in big.json: id 1180591620717411303424 is beyond the "
    "largest id kept (2147483647): mapped to integer id 1",
    "repaired: images[1] (id -4) 'b.png' in big.json: id -4 is negative: mapped to integer id 2",
    "repaired: images[2] (id True) 'c.png' in big.json: id True is a boolean: mapped to integer id 3",
    "repaired: annotations[0] (id 18446744073709551617) in big.json: id 18446744073709551617 is beyond",
    "repaired: annotations[1] (id -1) in big.json: id -1 is negative: mapped to integer id",
    "repaired: annotations[2] (id 3.0) in big.json: id 3.0 read as the integer 3",
]


def test_ids_of_any_size_are_mapped_and_reported(store: Store, tmp_path: Path):
    """SQLite (64-bit) and PostgreSQL (32-bit INTEGER) alike: no raw OverflowError naming nothing."""
    path = big_id_file(tmp_path)
    dataset = store.create_dataset("big", tmp_path / "images")
    report = store.import_coco(dataset, path)
    assert_lines(report.lines(), BIG_LINES)
    assert store_masks(store, dataset) == {"a.png": [48], "b.png": [48], "c.png": [140]}
    exported = standard_json(store.export_coco(dataset, tmp_path / "out.json"))
    assert sorted(a["id"] for a in exported["annotations"]) == [3, 4, 5]
    assert [c["id"] for c in exported["categories"]] == [1]
    assert sorted(i["id"] for i in exported["images"]) == [1, 2, 3]


def test_ids_of_any_size_through_launch_and_training(tmp_path: Path):
    path = big_id_file(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")     # launch.py --coco
    assert_lines(log, BIG_LINES)
    assert store_masks(project.store, project.dataset_id) == {"a.png": [48], "b.png": [48], "c.png": [140]}
    project, log = open_studio(tmp_path / "images", None, tmp_path / "data2")    # the COCO tab's import
    assert_lines(project.import_coco(path).split("\n"), BIG_LINES[1:])
    assert store_masks(project.store, project.dataset_id) == {"a.png": [48], "b.png": [48], "c.png": [140]}
    assert loader_masks(CocoInstances(path, tmp_path / "images")) == {"a.png": [48], "b.png": [48], "c.png": [140]}


# ------------------------------------------------------------------------------ repeated annotation ids


def repeated_id_file(folder: Path) -> Path:
    write_image(folder / "images" / "a.png")
    write_image(folder / "images" / "b.png", seed=1)
    data = document([image(1, "a.png"), image(2, "b.png")],
                    [ann(5, 1), ann(5, 2), ann(5, 1, OTHER), ann(6, 2, OTHER)])
    return write_json(folder / "repeated.json", data)


REPEATED_LINES = [
    "repaired: annotations[1] (id 5) in repeated.json: annotation id 5 is also annotations[0]'s: given id 7 "
    "(the object is kept)",
    "repaired: annotations[2] (id 5) in repeated.json: annotation id 5 is also annotations[0]'s: given id 8",
]


def test_a_repeated_annotation_id_gets_a_new_id_and_the_object_stays(sqlite_store: Store, tmp_path: Path):
    path = repeated_id_file(tmp_path)
    dataset = sqlite_store.create_dataset("repeated", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), REPEATED_LINES)
    assert store_masks(sqlite_store, dataset) == {"a.png": [48, 140], "b.png": [48, 140]}
    exported = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json"))
    assert sorted(a["id"] for a in exported["annotations"]) == [5, 6, 7, 8]


def test_a_repeated_annotation_id_through_launch_the_coco_tab_and_training(tmp_path: Path):
    path = repeated_id_file(tmp_path)
    write_image(tmp_path / "other" / "a.png")
    write_image(tmp_path / "other" / "b.png", seed=1)
    project, log = open_studio(tmp_path / "other", None, tmp_path / "data")   # a project over the images
    upload = project.import_coco(path, tmp_path / "images")                   # then the COCO tab's import
    assert "4 annotations" in upload.split("\n")[0], upload
    assert store_masks(project.store, project.dataset_id) == {"a.png": [48, 140], "b.png": [48, 140]}
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data2")
    assert_lines(log, REPEATED_LINES)
    assert loader_masks(CocoInstances(path, tmp_path / "images")) == {"a.png": [48, 140], "b.png": [48, 140]}


def test_refused_annotations_are_not_counted_among_the_imported(sqlite_store: Store, tmp_path: Path):
    path = repeated_id_file(tmp_path)
    dataset = sqlite_store.create_dataset("twice", tmp_path / "images")
    sqlite_store.import_coco(dataset, path, match_by_name=True)
    again = sqlite_store.import_coco(dataset, path, match_by_name=True)   # every annotation already held
    assert again.annotations_added == 0
    assert "0 annotations (0 polygons, 0 compressed RLE, 0 uncompressed RLE, 0 crowd)" in again.summary()


# -------------------------------------------------------------------------------- truncated images


def truncated_folder(folder: Path) -> Path:
    """good.png and cut.jpg (a JPEG cut before its end: the header reads, the pixels do not)."""
    write_image(folder / "images" / "good.png")
    data = write_image(folder / "images" / "cut.jpg", seed=3, fmt="JPEG")
    (folder / "images" / "cut.jpg").write_bytes(data[:-40])
    return write_json(folder / "cut.json", document([image(1, "good.png"), image(2, "cut.jpg")],
                                                     [ann(1, 1), ann(2, 2)]))


def test_a_truncated_image_is_refused_by_name_at_import(sqlite_store: Store, tmp_path: Path):
    path = truncated_folder(tmp_path)
    dataset = sqlite_store.create_dataset("cut", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), ["refused: images[1] (id 2) 'cut.jpg' in cut.json: cannot decode image cut.jpg: "
                                  "image file is truncated"])
    assert store_masks(sqlite_store, dataset) == {"good.png": [48]}


def test_a_truncated_image_through_launch_and_the_upload(tmp_path: Path):
    path = truncated_folder(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")
    assert any("'cut.jpg'" in line and "truncated" in line for line in log), log
    assert [e.file_name for e in project.images()] == ["good.png"]
    assert any(line.startswith("skipped unreadable image cut.jpg") and "truncated" in line for line in log), log
    report = project.add_uploads([tmp_path / "images" / "cut.jpg"])     # the COCO tab's image upload
    assert report.added == [] and "truncated" in report.unreadable[0]
    upload = project.import_coco(path).split("\n")                      # the COCO tab's COCO import
    assert_lines(upload, ["refused: images[1] (id 2) 'cut.jpg' in cut.json: cannot decode image cut.jpg"])
    assert [e.file_name for e in project.images()] == ["good.png"]


def test_training_skips_a_file_that_cannot_be_decoded_and_names_it(tmp_path: Path, capfd):
    """The training loader reads headers only: a file truncated after the reader listed it is
    skipped by name in the data-loader worker, and training goes on (no worker traceback)."""
    from training import TrainConfig, train
    from training.augment import AugmentConfig
    from training.losses import LossConfig
    path = truncated_folder(tmp_path)
    dataset = CocoInstances(path, tmp_path / "images")
    assert len(dataset) == 2
    samples = [dataset[(k, k)] for k in range(2)]
    assert [s["image_id"] for s in samples] == [1, 1]         # cut.jpg's turn gives good.png's sample
    assert "skipped " in capfd.readouterr().err
    losses: list[float] = []
    config = TrainConfig(train_json=str(path), image_root=str(tmp_path / "images"), output_dir=str(tmp_path / "run"),
                         preset="tiny", device="cpu", max_iters=2, batch_size=2, num_workers=1, log_period=1,
                         progress_bar=False, augment=AugmentConfig(min_sizes=(64,), max_size=96, crop_prob=0.0),
                         loss=LossConfig(num_points=64))
    train(config, progress=lambda it, total, metrics: losses.append(metrics["loss"]))
    err = capfd.readouterr().err
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert "cut.jpg" in err and "image file is truncated" in err and "Traceback" not in err


def test_predict_names_a_truncated_image(tmp_path: Path, capsys):
    from fastinst.cli import main
    truncated_folder(tmp_path)
    weights = str(model_weights(tmp_path))
    capsys.readouterr()
    code = main(["predict", str(tmp_path / "images" / "cut.jpg"), "--out", str(tmp_path / "out"), "--weights",
                 weights, "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "cut.jpg" in err and "truncated" in err and "Traceback" not in err
    code = main(["predict-folder", str(tmp_path / "images"), "--out", str(tmp_path / "folder"), "--weights",
                 weights, "--device", "cpu"])
    captured = capsys.readouterr()
    assert "cut.jpg" in captured.out + captured.err and "Traceback" not in captured.err


# ------------------------------------------------------------------------------------ training.evaluate


def evaluate_cli(capsys, *args: str) -> tuple[int, str, str]:
    from training.evaluate import main
    capsys.readouterr()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_evaluate_tells_a_dataset_from_results_and_writes_output(tmp_path: Path, capsys):
    write_image(tmp_path / "images" / "a.png")
    gt = write_json(tmp_path / "gt.json", document([image(1, "a.png")], [ann(1, 1)]))
    common = ("--json", str(gt), "--image-root", str(tmp_path / "images"))
    code, out, err = evaluate_cli(capsys, "--results", str(gt), *common)
    assert code == 2 and "gt.json is a COCO dataset file" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    unscored = write_json(tmp_path / "unscored.json", [{k: v for k, v in a.items() if k != "id"}
                                                       for a in json.loads(gt.read_text())["annotations"]])
    code, out, err = evaluate_cli(capsys, "--results", str(unscored), *common)
    assert code == 2 and "annotations[0] in unscored.json: no 'score'" in err and "KeyError" not in err
    rle = mask_utils.encode(np.asfortranarray(mask_utils.decode(mask_utils.frPyObjects(SQUARE, 24, 32))[:, :, 0]))
    results = write_json(tmp_path / "results.json", [{"image_id": 1, "category_id": 1, "score": 0.9,
                                                      "segmentation": {"size": [24, 32],
                                                                       "counts": rle["counts"].decode()}}])
    output = tmp_path / "metrics" / "m.json"
    code, out, err = evaluate_cli(capsys, "--results", str(results), *common, "--output", str(output))
    assert code == 0, err
    assert json.loads(output.read_text())["segm/AP"] == pytest.approx(100.0) == json.loads(out)["segm/AP"]


# ------------------------------------------------------------------------------------ other weights


def test_a_pth_of_another_model_is_not_called_a_released_fastinst_checkpoint(tmp_path: Path, capsys):
    import torch
    from engines.load import load_predictor
    from fastinst import CheckpointError
    from fastinst.cli import main
    weights = tmp_path / "mask2former_R50_bs16_50ep.pth"
    torch.save({"model": {"sem_seg_head.predictor.query_feat.weight": torch.zeros(100, 256)}}, weights)
    with pytest.raises(CheckpointError) as caught:
        load_predictor(weights)
    assert "is a released" not in str(caught.value).replace("if it is a released", "")
    assert "if it is a released FastInst checkpoint, give its --preset" in str(caught.value)
    write_image(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--weights", str(weights)])
    err = capsys.readouterr().err
    assert code == 2 and "is not one of our checkpoints" in err and "is a released" not in err.replace("if it is a", "")


def test_a_name_an_earlier_version_stored_as_spelled_is_the_same_image(sqlite_store: Store, tmp_path: Path):
    """A store written before names were normalised holds './a.png': the folder scan of launch.py
    --images and the COCO tab's import take 'a.png' as that image, not as a second one."""
    from app.project import add_folder_images
    write_image(tmp_path / "images" / "a.png")
    dataset = sqlite_store.create_dataset("old names", tmp_path / "images")
    sqlite_store.import_coco(dataset, write_json(tmp_path / "first.json", document([image(1, "a.png")], [ann(1, 1)])))
    with sqlite3.connect(tmp_path / "studio.db") as db:   # as the earlier version stored it
        db.execute("UPDATE images SET file_name = './a.png', rel_path = './a.png'")
    assert add_folder_images(sqlite_store, dataset, tmp_path / "images") == (0, [])
    later = write_json(tmp_path / "later.json", document([image(5, "a.png")], [ann(1, 5, OTHER)]))
    report = sqlite_store.import_coco(dataset, later, match_by_name=True)
    assert report.images_added == 0 and report.annotations_added == 1
    assert [sorted(int(a.mask.sum()) for a in sqlite_store.annotations(i.id))
            for i in sqlite_store.list_images(dataset)] == [[48, 140]]
