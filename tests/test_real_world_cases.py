"""Every case of ../shared/cases (real-world-shaped files that broke the project) through the public
entry points it reaches, with the values of its EXPECT.md. pycocotools is the mask oracle."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from annotations import CocoFormatError, Store
from annotations.coco_parse import read_coco
from fastinst import ImageTooLargeError, build_model
from fastinst.images import image_size, load_image
from fastinst.official import load_official_partial
from reference import REFERENCE_DIR, official_state_dict
from training import TrainConfig, train
from training.augment import AugmentConfig
from training.data import CocoInstances
from training.evaluate import evaluate_results
from training.init_weights import class_dependent_keys, load_initial_weights
from training.losses import FastInstCriterion, LossConfig

CASES = REFERENCE_DIR.parent / "cases"
REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "app" / "assets" / "demo_model.safetensors"


def case(name: str) -> Path:
    folder = CASES / name
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    return folder


@pytest.fixture
def store(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'studio.db'}") as s:
        yield s


def imported(store: Store, folder: Path, **kw):
    dataset = store.create_dataset(folder.name, folder / "images")
    return dataset, store.import_coco(dataset, folder / "annotations.json", **kw)


def masks_by_coco_id(store: Store, dataset: int) -> dict[int, np.ndarray]:
    return {a.coco_id: a.mask for image in store.list_images(dataset) for a in store.annotations(image.id)}


def short_training(json_path: Path, image_root: Path, out: Path) -> list[float]:
    losses: list[float] = []
    config = TrainConfig(train_json=str(json_path), image_root=str(image_root), output_dir=str(out), preset="tiny",
                         device="cpu", max_iters=3, batch_size=1, num_workers=0, log_period=1, progress_bar=False,
                         augment=AugmentConfig(min_sizes=(96,), max_size=128, crop_prob=0.0),
                         loss=LossConfig(num_points=128))
    train(config, progress=lambda it, total, metrics: losses.append(metrics["loss"]))
    return losses


def test_01_degenerate_polygons_are_repaired_or_refused_per_annotation(store: Store, tmp_path: Path):
    folder = case("01_degenerate_polygons")
    dataset, report = imported(store, folder)
    masks = masks_by_coco_id(store, dataset)
    assert sorted(masks) == [1, 2]
    assert masks[1].sum() == 45 and masks[2].sum() == 80
    assert masks[2][15, 22] and not masks[2][2, 21]
    lines = report.lines()
    assert any(line.startswith("repaired: annotations[1] (id 2) in annotations.json: polygon 0") for line in lines)
    for position, ann_id in ((2, 3), (3, 4), (4, 5), (5, 6)):
        assert any(line.startswith(f"refused: annotations[{position}] (id {ann_id}) in annotations.json")
                   for line in lines), lines
    dataset_for_training = CocoInstances(folder / "annotations.json", folder / "images")
    assert dataset_for_training.load(0)["masks"].shape[0] == 2
    assert all(torch.isfinite(torch.tensor(v)) for v in short_training(folder / "annotations.json",
                                                                           folder / "images", tmp_path / "run"))


def test_04_mask_with_hole_and_island_is_exported_unchanged(store: Store, tmp_path: Path):
    folder = case("04_mask_hole_and_island")
    dataset, _ = imported(store, folder)
    [image] = store.list_images(dataset)
    [ann] = store.annotations(image.id)
    store.add_category(dataset, "other")
    other = next(c.id for c in store.categories(dataset) if c.name == "other")
    store.set_category(ann.id, other)
    for polygons in (False, True):
        kept: list[int] = []
        out = store.export_coco(dataset, tmp_path / f"export-{polygons}.json", polygons=polygons, kept_rle=kept)
        exported = json.loads(out.read_text())["annotations"][0]
        assert kept == ([1] if polygons else [])
        height, width = image.height, image.width
        rle = mask_utils.frPyObjects(exported["segmentation"], height, width) \
            if isinstance(exported["segmentation"]["counts"], list) else exported["segmentation"]
        decoded = mask_utils.decode(rle)
        assert int(mask_utils.area(rle)) == 129 == exported["area"]
        assert [int(v) for v in mask_utils.toBbox(rle)] == [3, 3, 18, 15] == [int(v) for v in exported["bbox"]]
        assert decoded[8, 8] == 0 and decoded[4, 4] == 1 and decoded[17, 20] == 1


def test_08_string_image_ids_everywhere(store: Store, tmp_path: Path):
    folder = case("08_string_image_ids")
    dataset, report = imported(store, folder)
    counts = {i.file_name: i.num_annotations for i in store.list_images(dataset)}
    assert counts == {"cam0_000123.png": 1, "cam1_000123.png": 2, "seven.png": 1}
    upload = store.create_dataset("upload", folder / "images")  # the studio's upload path
    assert store.import_coco(upload, folder / "annotations.json", match_by_name=True).annotations_added == 4
    exported = json.loads(store.export_coco(dataset, tmp_path / "e.json").read_text())
    assert all(isinstance(i["id"], int) for i in exported["images"])
    assert len({a["id"] for a in exported["annotations"]}) == 4
    by_id = {i["id"]: i["file_name"] for i in exported["images"]}
    links = sorted((by_id[a["image_id"]], a["id"]) for a in exported["annotations"])
    assert [name for name, _ in links] == ["cam0_000123.png", "cam1_000123.png", "cam1_000123.png", "seven.png"]
    gt = COCO()
    gt.dataset = exported
    gt.createIndex()
    evaluator = COCOeval(gt, gt.loadRes([{**a, "score": 1.0} for a in exported["annotations"]]), iouType="segm")
    evaluator.evaluate()
    training = CocoInstances(folder / "annotations.json", folder / "images")
    assert len(training) == 3 and sum(training.load(i)["masks"].shape[0] for i in range(3)) == 4


def test_11_exif_orientation_and_size_mismatch(store: Store, tmp_path: Path):
    folder = case("11_exif_orientation_and_size_mismatch")
    photo = folder / "images" / "photo_exif6.jpg"
    assert image_size(photo) == (24, 40)
    pixels = load_image(photo)
    assert pixels.shape == (40, 24, 3) and pixels[29, 7, 0] > 200 > pixels[29, 7, 1]
    dataset, report = imported(store, folder)
    sizes = {i.file_name: (i.width, i.height) for i in store.list_images(dataset)}
    assert sizes == {"photo_exif6.jpg": (24, 40)}
    assert any(line.startswith("refused: images[1]") and "swapped_wh.png" in line and "24x40" in line
               for line in report.lines()), report.lines()
    [ann] = masks_by_coco_id(store, dataset).values()
    assert ann.shape == (40, 24) and ann[29, 7]
    training = CocoInstances(folder / "annotations.json", folder / "images")
    assert len(training) == 1 and tuple(training.load(0)["image"].shape) == (3, 40, 24)


def test_12_every_image_mode_loads_as_rgb_with_its_contrast(tmp_path: Path):
    folder = case("12_image_modes")
    for name in ("rgba.png", "gray_L.png", "gray16.png", "palette.png", "cmyk.jpg"):
        pixels = load_image(folder / "images" / name)
        assert pixels.shape == (24, 32, 3) and pixels.dtype == np.uint8, name
    gray16 = load_image(folder / "images" / "gray16.png")
    assert gray16[10, 12, 0] > gray16[0, 0, 0] and gray16[0, 0, 0] < 255
    cmyk = load_image(folder / "images" / "cmyk.jpg")[10, 12].astype(int)
    assert cmyk[0] > cmyk[1] and cmyk[0] > cmyk[2]
    from PIL import Image                          # a GIF is found by folder scans and read as RGB
    from app.project import image_files
    Image.open(folder / "images" / "palette.png").save(tmp_path / "palette.gif")
    assert image_files(tmp_path) == [Path("palette.gif")]
    assert np.array_equal(load_image(tmp_path / "palette.gif"), load_image(folder / "images" / "palette.png"))
    training = CocoInstances(folder / "annotations.json", folder / "images")
    for index in range(len(training)):
        sample = training.load(index)
        assert tuple(sample["image"].shape) == (3, 24, 32) and int(sample["masks"].sum()) == 192


def test_13_empty_image_and_no_predictions(store: Store, tmp_path: Path):
    folder = case("13_empty_image_and_no_predictions")
    dataset, _ = imported(store, folder)
    exported = json.loads(store.export_coco(dataset, tmp_path / "e.json").read_text())
    assert sorted(i["file_name"] for i in exported["images"]) == ["background_only.png", "with_object.png"]
    gt, images = folder / "annotations.json", folder / "images"
    assert evaluate_results(gt, folder / "predictions_empty.json", images)["segm/AP"] == 0.0
    assert evaluate_results(gt, folder / "predictions_perfect.json", images)["segm/AP"] == pytest.approx(100.0)
    wrapped = tmp_path / "wrapped.json"         # a COCO document where a results list belongs
    wrapped.write_text(json.dumps({"annotations": json.loads((folder / "predictions_perfect.json").read_text())}))
    metrics = evaluate_results(gt, wrapped, images)
    assert metrics["segm/AP"] == pytest.approx(100.0)
    assert "repaired: wrapped.json: a COCO document, not a results list" in metrics["report"][-1]
    background = json.loads(gt.read_text())
    background["images"] = [i for i in background["images"] if i["file_name"] == "background_only.png"]
    background["annotations"] = []
    only_background = tmp_path / "background.json"
    only_background.write_text(json.dumps(background))
    losses = short_training(only_background, images, tmp_path / "run")
    assert losses and all(np.isfinite(losses))


def predict_cli(capsys, *args: str) -> tuple[int, str]:
    """``python -m fastinst predict ...`` in this process (the same ``main``): (exit code, stderr)."""
    from fastinst.cli import main
    capsys.readouterr()
    code = main(["predict", *args, "--weights", str(DEMO_MODEL), "--device", "cpu"])
    return code, capsys.readouterr().err


def test_13_cli_predict_with_no_instances_writes_results(tmp_path: Path, capsys):
    folder = case("13_empty_image_and_no_predictions")
    out = tmp_path / "out"
    code, err = predict_cli(capsys, str(folder / "images"), "--out", str(out), "--score-threshold", "1.01")
    assert code == 0, err
    assert json.loads((out / "results.json").read_text()) == []
    assert (out / "background_only.png.overlay.png").is_file()
    code, err = predict_cli(capsys, str(folder / "images"), "--out", str(out))
    assert code == 2 and "--overwrite" in err and "Traceback" not in err


def test_cli_outputs_never_collide(tmp_path: Path, capsys):
    folder = case("13_empty_image_and_no_predictions")
    for sub in ("a", "b"):
        (tmp_path / "in" / sub).mkdir(parents=True)
        shutil.copy(folder / "images" / "with_object.png", tmp_path / "in" / sub / "same.png")
    (tmp_path / "in" / "b" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    code, err = predict_cli(capsys, str(tmp_path / "in"), "--out", str(out))
    assert code == 2 and "skipped b/broken.png: cannot read image broken.png" in err
    assert (out / "a" / "same.png.overlay.png").is_file() and (out / "b" / "same.png.overlay.png").is_file()
    names = [i["file_name"] for i in json.loads((out / "images.json").read_text())["images"]]
    assert names == ["a/same.png", "b/same.png"]
    shutil.rmtree(tmp_path / "in" / "a")
    code, err = predict_cli(capsys, str(tmp_path / "in"), "--out", str(out), "--overwrite")
    assert not (out / "a" / "same.png.overlay.png").exists(), "a stale overlay of the earlier run was left"
    assert (out / "b" / "same.png.overlay.png").is_file()


def test_14_polygons_outside_the_image_are_clipped_and_absurd_ones_refused_fast(store: Store):
    folder = case("14_polygon_outside_image")
    started = time.perf_counter()
    dataset, report = imported(store, folder)
    assert time.perf_counter() - started < 5.0
    masks = masks_by_coco_id(store, dataset)
    assert sorted(masks) == [1, 2]
    for ann_id, area, box in ((1, 80, [0, 0, 10, 8]), (2, 42, [25, 18, 7, 6])):
        rle = mask_utils.encode(np.asfortranarray(masks[ann_id].astype(np.uint8)))
        assert int(mask_utils.area(rle)) == area and [int(v) for v in mask_utils.toBbox(rle)] == box
    assert any(line.startswith("refused: annotations[2] (id 3)") and "absurdly far outside" in line
               for line in report.lines())
    training = CocoInstances(folder / "annotations.json", folder / "images")
    assert training.load(0)["masks"].shape[0] == 2


def test_15_zero_area_instances(store: Store, tmp_path: Path):
    folder = case("15_zero_area_instances")
    dataset, report = imported(store, folder)
    [image] = store.list_images(dataset)
    anns = {a.coco_id: a for a in store.annotations(image.id)}
    assert sorted(anns) == [2, 3, 4]
    assert anns[2].bbox == (16, 5, 4, 6) and anns[2].area == 24
    lines = report.lines()
    assert any(line.startswith("refused: annotations[0] (id 1)") and "zero area" in line for line in lines)
    assert any(line.startswith("repaired: annotations[1] (id 2)") and "[16, 5, 4, 6]" in line for line in lines)
    perfect = [{"image_id": 1, "category_id": 1, "score": 1.0,
                "segmentation": {"size": [image.height, image.width], "counts": a.rle_counts}} for a in anns.values()]
    (tmp_path / "perfect.json").write_text(json.dumps(perfect))
    metrics = evaluate_results(folder / "annotations.json", tmp_path / "perfect.json", folder / "images")
    assert metrics["segm/AP"] == pytest.approx(100.0)
    losses = short_training(folder / "annotations.json", folder / "images", tmp_path / "run")
    assert losses and all(np.isfinite(losses))


def test_18_released_checkpoint_on_other_classes_loads_what_fits():
    folder = case("18_checkpoint_class_mismatch")
    config = json.loads((folder / "finetune_config.json").read_text())
    model = build_model("D3-R50-640", num_classes=config["num_classes"])
    how, notes = load_initial_weights(model, folder / config["checkpoint"], "D3-R50-640", config["class_names"])
    skipped = [line for line in notes if line.startswith("skipped ")]
    assert how == "partial" and len(skipped) == 11
    assert all("(81" in line and "(4" in line for line in skipped)
    assert "loaded 4 tensors" in notes[-1] and "missing from the file" in notes[-1]
    assert FastInstCriterion(config["num_classes"]).empty_weight.shape == (4,)


def test_full_official_d1_state_dict_on_a_3_class_project(tmp_path: Path):
    path = tmp_path / "fastinst_R50_ppm-fpn_x1_576.pth"
    torch.save({"model": official_state_dict("fastinst_R50_ppm-fpn_x1_576")}, path)
    model = build_model("D1-R50-576", num_classes=3)
    report = load_official_partial(model, path)
    class_keys = class_dependent_keys("D1-R50-576", 3)
    skipped = {name for name, _, _ in report.skipped}
    assert {name for name in skipped if not name.endswith("criterion.empty_weight")} == class_keys
    assert not report.missing and not report.unexpected
    state = model.state_dict()
    reference = build_model("D1-R50-576", num_classes=80)
    from fastinst.official import load_official
    load_official(reference, path)
    for key, value in reference.state_dict().items():
        if key not in class_keys:
            assert torch.equal(state[key], value), key


def test_22_huge_image_is_refused_by_name_everywhere(store: Store, tmp_path: Path, capsys):
    folder = case("22_huge_image")
    image = folder / "images" / "orthophoto_16000x12000.png"
    with pytest.raises(ImageTooLargeError, match="orthophoto_16000x12000.png is 16000x12000.*pixel limit"):
        load_image(image)
    dataset = store.create_dataset("huge", folder / "images")
    with pytest.raises(CocoFormatError, match="orthophoto_16000x12000.png.*pixel limit"):
        store.import_coco(dataset, folder / "annotations.json")
    assert store.list_images(dataset) == []
    code, err = predict_cli(capsys, str(image), "--out", str(tmp_path / "out"))
    assert code == 2 and "pixel limit" in err and "Traceback" not in err
    from app.project import add_folder_images
    added, skipped = add_folder_images(store, dataset, folder / "images")
    assert added == 0 and "pixel limit" in skipped[0]


def standard_json(path: Path) -> dict:
    """A file as a browser's JSON.parse reads it (RFC 8259: no NaN or Infinity tokens)."""
    return json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"{token} in {path.name}"))


def test_24_nan_and_infinity_never_enter_the_store_and_every_export_is_standard_json(store: Store, tmp_path: Path):
    folder = case("24_nan_infinity_values")
    dataset, report = imported(store, folder)
    lines = report.lines()
    for start in ("repaired: images[0] (id 1) 'nan.png' in annotations.json: meta.gps_altitude (-inf)",
                  "repaired: annotations[0] (id 1) in annotations.json: bbox [nan, nan, nan, nan] replaced",
                  "repaired: annotations[0] (id 1) in annotations.json: area nan replaced by the mask's 80",
                  "repaired: annotations[1] (id 2) in annotations.json: bbox [20, 3, inf, 6] replaced",
                  "repaired: annotations[1] (id 2) in annotations.json: area inf replaced by the mask's 60",
                  "refused: annotations[2] (id 3) in annotations.json: segmentation polygon 0 has a non-finite",
                  "repaired: annotations[3] (id 4) in annotations.json: attributes.track_confidence (nan)"):
        assert any(line.startswith(start) for line in lines), (start, lines)
    exported = standard_json(store.export_coco(dataset, tmp_path / "e.json"))
    by_id = {a["id"]: a for a in exported["annotations"]}
    assert sorted(by_id) == [1, 2, 4]
    assert (by_id[1]["area"], by_id[1]["bbox"]) == (80, [2, 2, 10, 8])
    assert (by_id[2]["area"], by_id[2]["bbox"]) == (60, [20, 3, 10, 6])
    assert by_id[4]["area"] == 120 and by_id[4]["attributes"] == {"occluded": False, "track_confidence": None}
    assert exported["images"][0]["meta"] == {"gps_altitude": None, "camera": "cam-3"}
    from app.config import StudioConfig
    from app.startup import open_project
    config = StudioConfig(images=folder / "images", coco=folder / "annotations.json", weights=DEMO_MODEL,
                          device="cpu", data_dir=tmp_path / "studio")     # launch.py --images images --coco ...
    project = open_project(config, log=lambda line: None)
    studio = standard_json(project.export_coco(only_reviewed=False))
    assert sorted(a["area"] for a in studio["annotations"]) == [60, 80, 120]
    losses = short_training(folder / "annotations.json", folder / "images", tmp_path / "run")
    assert losses and all(np.isfinite(losses))


def test_27_an_id_two_pictures_claim_attaches_nothing_and_one_file_is_one_image(store: Store, tmp_path: Path):
    folder = case("27_duplicate_image_entries")
    dataset, report = imported(store, folder)
    lines = report.lines()
    for start in ("refused: images[0] (id 7) 'cam1.png' in annotations.json: image id 7 is claimed by 2 entries",
                  "refused: images[1] (id 7) 'cam2.png' in annotations.json: image id 7 is claimed by 2 entries",
                  "refused: annotations[0] (id 1) in annotations.json: image id 7 is claimed",
                  "refused: annotations[1] (id 2) in annotations.json: image id 7 is claimed",
                  "repaired: images[3] (id 9) 'frame.png' in annotations.json: the same file as images[2] (id 8)",
                  "refused: annotations[4] (id 5) in annotations.json: image_id 99 is not in images"):
        assert any(line.startswith(start) for line in lines), (start, lines)
    document = json.loads((folder / "annotations.json").read_text())
    polygons = {a["id"]: a["segmentation"] for a in document["annotations"]}

    def area_of(ann_id: int) -> int:
        return int(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(polygons[ann_id], 24, 32))))
    stored = {i.file_name: sorted(int(a.mask.sum()) for a in store.annotations(i.id)) for i in store.list_images(dataset)}
    assert stored == {"frame.png": sorted([area_of(3), area_of(4)])}
    training = CocoInstances(folder / "annotations.json", folder / "images")
    assert [training.coco.imgs[i]["file_name"] for i in training.image_ids] == ["frame.png"]
    assert sorted(int(m.sum()) for m in training.load(0)["masks"]) == stored["frame.png"]


def test_every_entry_point_gives_the_same_report(store: Store, tmp_path: Path):
    """Store import, the studio's upload (match by name), training data and evaluation read one file
    through one reader, so they report the same findings."""
    folder = case("01_degenerate_polygons")
    gt = tmp_path / "shapes.json"
    document = json.loads((folder / "annotations.json").read_text())
    document["images"][0]["id"] = "frame-1"
    for ann in document["annotations"]:
        ann["image_id"] = "frame-1"
    gt.write_text(json.dumps(document))
    images = folder / "images"
    _, store_report = imported_file(store, gt, images, "store")
    _, upload_report = imported_file(store, gt, images, "upload", match_by_name=True, display_name="shapes.json")
    training = CocoInstances(gt, images).report.lines()
    (tmp_path / "none.json").write_text("[]")
    evaluation = evaluate_results(gt, tmp_path / "none.json", images)["report"]
    assert store_report.lines()[1:] == upload_report.lines()[1:] == training == evaluation[:-1]
    assert evaluation[-1] == "refused: none.json: holds no results: every AP of it is 0"
    assert any("(id 'frame-1')" in line for line in training) and len(training) >= 6


def imported_file(store: Store, path: Path, images: Path, name: str, **kw):
    dataset = store.create_dataset(name, images)
    return dataset, store.import_coco(dataset, path, **kw)


def test_uploading_the_same_file_twice_adds_nothing_the_second_time(store: Store):
    folder = case("08_string_image_ids")
    dataset = store.create_dataset("upload twice", folder / "images")
    first = store.import_coco(dataset, folder / "annotations.json", match_by_name=True)
    second = store.import_coco(dataset, folder / "annotations.json", match_by_name=True)
    assert first.annotations_added == 4 and second.annotations_added == 0
    assert sum(1 for line in second.lines() if "already on this image (annotation" in line) == 4
    assert sum(i.num_annotations for i in store.list_images(dataset)) == 4


def test_predict_results_are_matched_to_the_ground_truth_by_file_name(tmp_path: Path, capsys):
    """``predict`` numbers images its own way; evaluation matches its results by file name."""
    folder = case("08_string_image_ids")
    out = tmp_path / "out"
    code, err = predict_cli(capsys, str(folder / "images"), "--out", str(out), "--score-threshold", "0")
    assert code == 0, err
    metrics = evaluate_results(folder / "annotations.json", out / "results.json", folder / "images")
    unmatched = [line for line in metrics["report"] if "results.json" in line and "image_id" in line]
    assert not unmatched, unmatched   # (the demo model's other classes are refused by category, as they should)
    assert any("results.json" in line and "category_id" in line for line in metrics["report"])
    (tmp_path / "alone").mkdir()
    shutil.copy(out / "results.json", tmp_path / "alone" / "results.json")   # without images.json: ids only
    with pytest.raises(CocoFormatError, match="none of its .* results could be used"):
        evaluate_results(folder / "annotations.json", tmp_path / "alone" / "results.json", folder / "images")


def test_strict_mode_refuses_what_default_mode_repairs(store: Store):
    folder = case("14_polygon_outside_image")
    dataset = store.create_dataset("strict", folder / "images")
    with pytest.raises(CocoFormatError, match=r"annotations\[0\] \(id 1\) in annotations.json: .*strict mode"):
        store.import_coco(dataset, folder / "annotations.json", strict=True)
    assert store.list_images(dataset) == []
    with pytest.raises(CocoFormatError, match="strict mode"):
        read_coco(folder / "annotations.json", strict=True)
