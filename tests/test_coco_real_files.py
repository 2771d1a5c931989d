"""More real-world files through every entry point (issue 20, "Files", second round): inputs shaped
like the ones public bug reports of CVAT, Label Studio, LabelMe, FiftyOne, Datumaro, Ultralytics and
pycocotools describe that the first round did not cover. Each is imported with a report naming
every repair, or refused naming the item; never attached to the wrong class or picture silently.
Entry points: the store's import and export, ``launch.py --images/--coco`` (``open_project``), the
studio's COCO tab (``Project.import_coco``), the training loader and ``training.evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools import mask as mask_utils

from annotations import CocoFormatError, Store
from training.data import CocoInstances
from training.evaluate import evaluate_results

from test_coco_files import (OTHER, SQUARE, TRIANGLE, area, ann, assert_lines, image, loader_masks, open_studio,
                             sqlite_store, standard_json, store_masks, write_image, write_json)

__all__ = ["sqlite_store"]   # the fixture, imported


def exported_classes(store: Store, dataset: int, path: Path) -> list[tuple[str, int]]:
    """(class name, mask area) of every exported annotation, as pycocotools reads the export."""
    exported = standard_json(store.export_coco(dataset, path))
    names = {c["id"]: c["name"] for c in exported["categories"]}
    return sorted((names[a["category_id"]], int(mask_utils.area(a["segmentation"]))) for a in exported["annotations"])


# --------------------------------------------------------------------- a category id two entries claim


def shared_category_file(folder: Path) -> Path:
    """Two tools' label lists merged by hand: id 1 is 'cat' and 'dog'; 'bird' is listed twice alike."""
    write_image(folder / "images" / "a.png")
    data = {"images": [image(1, "a.png")],
            "categories": [{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}, {"id": 2, "name": "bird"},
                           {"id": 2, "name": "bird"}, {"id": 3, "name": 7, "supercategory": float("nan")}],
            "annotations": [ann(1, 1), ann(2, 1, OTHER, category_id=2), ann(3, 1, TRIANGLE, category_id=3),
                            ann(4, 1, OTHER, category_id="1")]}
    return write_json(folder / "labels.json", data)


CATEGORY_LINES = [
    "refused: categories[0] in labels.json: category id 1 is claimed by 2 entries of different names "
    "(categories[0] 'cat', categories[1] 'dog'): which class an annotation of it is cannot be told",
    "refused: categories[1] in labels.json: category id 1 is claimed by 2 entries of different names",
    "repaired: categories[3] in labels.json: an earlier entry has this id and name (categories[2] 'bird'): "
    "read as one class",
    "repaired: categories[4] in labels.json: name 7 is a number: read as the name '7'",
    "repaired: categories[4] in labels.json: supercategory nan is not a string: left out",
    "refused: annotations[0] (id 1) in labels.json: category id 1 is claimed by 2 entries of different names",
    "refused: annotations[3] (id 4) in labels.json: category id 1 is claimed by 2 entries of different names",
]
CATEGORY_EXPECTED = sorted([("bird", 140), ("7", area(TRIANGLE))])


def test_a_category_id_two_names_claim_attaches_no_object_to_either(sqlite_store: Store, tmp_path: Path):
    path = shared_category_file(tmp_path)
    dataset = sqlite_store.create_dataset("labels", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), CATEGORY_LINES)
    assert report.annotations_added == 2
    assert exported_classes(sqlite_store, dataset, tmp_path / "out.json") == CATEGORY_EXPECTED
    assert {c.name for c in sqlite_store.categories(dataset)} == {"bird", "7"}


def test_a_category_id_two_names_claim_through_launch_the_coco_tab_training_and_evaluation(tmp_path: Path):
    path = shared_category_file(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")       # launch.py --coco
    assert_lines(log, CATEGORY_LINES)
    assert store_masks(project.store, project.dataset_id) == {"a.png": sorted([140, area(TRIANGLE)])}
    project, _ = open_studio(tmp_path / "images", None, tmp_path / "data2")         # the COCO tab
    assert_lines(project.import_coco(path).split("\n"), CATEGORY_LINES)
    assert store_masks(project.store, project.dataset_id) == {"a.png": sorted([140, area(TRIANGLE)])}
    training = CocoInstances(path, tmp_path / "images")
    assert training.class_names == ["bird", "7"]
    assert loader_masks(training) == {"a.png": sorted([140, area(TRIANGLE)])}
    results = write_json(tmp_path / "results.json", [ann(None, 1, score=0.9), ann(None, 1, OTHER, category_id=2, score=0.8)])
    lines = evaluate_results(path, results, tmp_path / "images")["report"]
    assert any(line.startswith("refused: annotations[0] in results.json: category id 1 is claimed by 2 entries")
               for line in lines), lines


# ------------------------------------------- names from another machine: case, %20, file://, C:\ paths


def foreign_names_file(folder: Path) -> Path:
    """Names as Windows tools, web tools (Label Studio, FiftyOne) and URIs write them, for files here."""
    for k, name in enumerate(("sub/IMG_1.PNG", "A.png", "a.png", "data/sub/b.png", "my c.png", "my d.png", "e.png", "b.png")):
        write_image(folder / "images" / name, seed=k)
    data = {"images": [image(1, "SUB/img_1.png"), image(2, "a.PNG"), image(3, "C:\\Users\\me\\data\\sub\\b.png"),
                       image(4, "file:///D:/export/my%20c.png"), image(5, "my%20d.png"), image(6, "C:\\x\\e.png"),
                       image(7, "C:\\y\\e.png")],
            "categories": [{"id": 1, "name": "part"}],
            "annotations": [ann(k, k, SQUARE if k % 2 else OTHER) for k in range(1, 8)]}
    return write_json(folder / "names.json", data)


NAMES_LINES = [
    "repaired: images[0] (id 1) 'SUB/img_1.png' in names.json: no file called 'SUB/img_1.png'; the file "
    "'sub/IMG_1.PNG' is this image (the same name but for letter case)",
    "refused: images[1] (id 2) 'a.PNG' in names.json: image not found; 2 files differ from it only in letter case "
    "('A.png', 'a.png'): which one is meant cannot be told",
    "repaired: images[2] (id 3) 'C:\\Users\\me\\data\\sub\\b.png' in names.json: no file called "
    "'C:/Users/me/data/sub/b.png'; the file 'data/sub/b.png' is this image (an absolute path outside the image "
    "folder: its end 'data/sub/b.png' is under the folder)",
    "repaired: images[3] (id 4) 'file:///D:/export/my%20c.png' in names.json: file_name "
    "'file:///D:/export/my%20c.png' is written 'D:/export/my c.png'",
    "repaired: images[3] (id 4) 'file:///D:/export/my%20c.png' in names.json: no file called 'D:/export/my c.png'; "
    "the file 'my c.png' is this image (an absolute path outside the image folder",
    "repaired: images[4] (id 5) 'my%20d.png' in names.json: no file called 'my%20d.png'; the file 'my d.png' is "
    "this image (the name percent-decoded",
    "refused: images[5] (id 6) 'C:\\x\\e.png' in names.json: images[5] 'C:/x/e.png', images[6] 'C:/y/e.png' are "
    "different paths that all end in the folder's 'e.png': which of them this file is cannot be told",
    "refused: images[6] (id 7) 'C:\\y\\e.png' in names.json: images[5] 'C:/x/e.png', images[6] 'C:/y/e.png'",
    "refused: annotations[5] (id 6) in names.json: image_id 6 is not in images",
    "refused: annotations[6] (id 7) in names.json: image_id 7 is not in images",
]
NAMES_EXPECTED = {"sub/IMG_1.PNG": [48], "data/sub/b.png": [48], "my c.png": [140], "my d.png": [48]}


def test_names_written_on_another_machine_find_their_file_or_are_refused_by_name(sqlite_store: Store,
                                                                                  tmp_path: Path):
    path = foreign_names_file(tmp_path)
    dataset = sqlite_store.create_dataset("names", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), NAMES_LINES)
    assert store_masks(sqlite_store, dataset) == NAMES_EXPECTED
    exported = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json"))
    assert sorted(i["file_name"] for i in exported["images"]) == sorted(NAMES_EXPECTED)


def test_names_written_on_another_machine_through_launch_and_training(tmp_path: Path):
    path = foreign_names_file(tmp_path)
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")       # launch.py --images --coco
    assert_lines(log, NAMES_LINES)
    held = store_masks(project.store, project.dataset_id)
    # the folder scan adds the files the JSON does not find, bare, and no file twice
    assert held == {**NAMES_EXPECTED, "A.png": [], "a.png": [], "e.png": [], "b.png": []}
    assert loader_masks(CocoInstances(path, tmp_path / "images")) == NAMES_EXPECTED


# -------------------------------------------------------- numbers written as strings: iscrowd and score


def crowd_strings_file(folder: Path) -> Path:
    """``iscrowd`` as converters write it: "0", "1", null, 1.0; and one that says nothing usable."""
    write_image(folder / "images" / "a.png")
    data = {"images": [image(1, "a.png")], "categories": [{"id": 1, "name": "part"}],
            "annotations": [ann(1, 1, iscrowd="0"), ann(2, 1, OTHER, iscrowd="1"), ann(3, 1, TRIANGLE, iscrowd=None),
                            ann(4, 1, [[2, 12, 8, 12, 8, 20, 2, 20]], iscrowd=1.0), ann(5, 1, iscrowd="yes")]}
    return write_json(folder / "crowd.json", data)


CROWD_LINES = [
    "repaired: annotations[0] (id 1) in crowd.json: 'iscrowd' '0' read as 0",
    "repaired: annotations[1] (id 2) in crowd.json: 'iscrowd' '1' read as 1",
    "repaired: annotations[2] (id 3) in crowd.json: 'iscrowd' null read as 0",
    "repaired: annotations[3] (id 4) in crowd.json: 'iscrowd' 1.0 read as 1",
    "refused: annotations[4] (id 5) in crowd.json: 'iscrowd' must be 0 or 1, got 'yes'",
]


def test_iscrowd_written_as_a_string_or_null_is_read_with_a_report(sqlite_store: Store, tmp_path: Path):
    path = crowd_strings_file(tmp_path)
    dataset = sqlite_store.create_dataset("crowd", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), CROWD_LINES)
    assert report.annotations_added == 4
    exported = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json"))
    crowd = sorted((int(mask_utils.area(a["segmentation"])), a["iscrowd"]) for a in exported["annotations"])
    assert crowd == sorted([(48, 0), (140, 1), (area(TRIANGLE), 0), (48, 1)])
    training = CocoInstances(path, tmp_path / "images")     # crowd objects are not trained on
    assert loader_masks(training) == {"a.png": sorted([48, area(TRIANGLE)])}
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")       # launch.py --coco
    assert_lines(log, CROWD_LINES)


def test_result_scores_written_as_strings_are_read_and_non_finite_ones_refused_by_name(tmp_path: Path):
    write_image(tmp_path / "images" / "a.png")
    gt = write_json(tmp_path / "gt.json", {"images": [image(1, "a.png")], "categories": [{"id": 1, "name": "part"}],
                                           "annotations": [ann(1, 1), ann(2, 1, OTHER)]})
    results = write_json(tmp_path / "results.json", [
        ann(None, 1, score="0.9"), ann(None, 1, OTHER, score=" 0.8 "), ann(None, 1, TRIANGLE, score=float("nan")),
        ann(None, 1, TRIANGLE, score="high")])
    metrics = evaluate_results(gt, results, tmp_path / "images")
    assert_lines(metrics["report"], [
        "repaired: annotations[0] in results.json: 'score' '0.9' (a string) read as the number 0.9",
        "repaired: annotations[1] in results.json: 'score' ' 0.8 ' (a string) read as the number 0.8",
        "refused: annotations[2] in results.json: 'score' must be a finite number, got nan",
        "refused: annotations[3] in results.json: 'score' must be a finite number, got 'high'"])
    assert metrics["segm/AP"] == pytest.approx(100.0)


# ------------------------------------------------------------------ JSON5-style text: refused, said why


@pytest.mark.parametrize("text, hint", [
    ('{"images": [], // exported by hand\n "categories": []}', "line 1 column 16 (a comment: JSON has no comments"),
    ('{"images": [{"id": 1, "file_name": "a.png"},], "categories": []}',
     "(a comma after the last item: JSON allows none"),
    ('{"images": [], "categories": [], /* none */ "annotations": []}', "(a comment: JSON has no comments"),
])
def test_comments_and_trailing_commas_are_refused_saying_which_and_nothing_saved_is_lost(
        sqlite_store: Store, tmp_path: Path, capsys, text: str, hint: str):
    write_image(tmp_path / "images" / "a.png")
    good = write_json(tmp_path / "good.json", {"images": [image(1, "a.png")], "categories": [{"id": 1, "name": "p"}],
                                               "annotations": [ann(1, 1)]})
    dataset = sqlite_store.create_dataset("json5", tmp_path / "images")
    sqlite_store.import_coco(dataset, good)
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(CocoFormatError, match=r"bad\.json: not valid JSON: .*" + r"\(" + hint.split("(")[1]):
        sqlite_store.import_coco(dataset, bad)
    assert store_masks(sqlite_store, dataset) == {"a.png": [48]}
    from training.evaluate import main
    capsys.readouterr()
    assert main(["--results", str(bad), "--json", str(good), "--image-root", str(tmp_path / "images")]) == 2
    err = capsys.readouterr().err
    assert hint in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------ RLE counts written as str(bytes) (b'...'), a common slip


def test_rle_counts_written_as_a_python_bytes_literal_are_read_with_a_report(sqlite_store: Store, tmp_path: Path):
    import numpy as np
    write_image(tmp_path / "images" / "a.png")
    mask = np.zeros((24, 32), np.uint8, order="F")
    mask[2:8, 2:10] = 1
    counts = mask_utils.encode(mask)["counts"]
    path = write_json(tmp_path / "rle.json", {
        "images": [image(1, "a.png")], "categories": [{"id": 1, "name": "part"}],
        "annotations": [ann(1, 1, {"size": [24, 32], "counts": str(counts)}),
                        ann(2, 1, {"size": [24, 32], "counts": "b'" + "x" * 5 + "'"})]})
    dataset = sqlite_store.create_dataset("rle", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), [
        "repaired: annotations[0] (id 1) in rle.json: RLE counts written as a Python bytes literal",
        "repaired: annotations[1] (id 2) in rle.json: RLE counts written as a Python bytes literal",
        "refused: annotations[1] (id 2) in rle.json: malformed compressed RLE counts"])
    [exported] = standard_json(sqlite_store.export_coco(dataset, tmp_path / "out.json"))["annotations"]
    assert (mask_utils.decode(exported["segmentation"]) == mask).all()
    assert loader_masks(CocoInstances(path, tmp_path / "images")) == {"a.png": [48]}


# ------------------------------------------------------------- phone photos: HEIC named, AVIF, in a folder


def phone_folder(folder: Path) -> Path:
    """An iPhone export: a HEIC photo (no decoder for it here, unless pillow-heif is installed) beside a JPEG."""
    images = folder / "images"
    write_image(images / "IMG_0002.JPG", fmt="JPEG")
    (images / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + bytes(64))
    return images


def test_a_heic_photo_in_the_folder_is_named_with_the_reason_not_passed_over(tmp_path: Path, capsys):
    from PIL import Image
    if ".heic" in Image.registered_extensions():
        pytest.skip("this Pillow decodes HEIC (pillow-heif)")
    images = phone_folder(tmp_path)
    project, log = open_studio(images, None, tmp_path / "data")                    # launch.py --images
    assert [e.file_name for e in project.images()] == ["IMG_0002.JPG"]
    assert any("IMG_0001.HEIC" in line and "no decoder for .heic files" in line for line in log), log
    from fastinst.cli import main                                                  # python -m fastinst predict
    from test_app_support import model_weights
    capsys.readouterr()
    code = main(["predict", str(images), "--out", str(tmp_path / "out"), "--weights",
                 str(model_weights(tmp_path)), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "IMG_0001.HEIC" in err and "no decoder for .heic" in err and "Traceback" not in err
    path = write_json(tmp_path / "phone.json", {"images": [image(1, "IMG_0001.HEIC"), image(2, "IMG_0002.JPG")],
                                                "categories": [{"id": 1, "name": "p"}],
                                                "annotations": [ann(1, 1), ann(2, 2)]})
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:                       # the store's import
        dataset = store.create_dataset("phone", images)
        report = store.import_coco(dataset, path)
        assert_lines(report.lines(), ["refused: images[0] (id 1) 'IMG_0001.HEIC' in phone.json: cannot read image "
                                      "IMG_0001.HEIC"])
        assert "no decoder for .heic files" in report.lines()[1]
        assert store_masks(store, dataset) == {"IMG_0002.JPG": [48]}


def test_an_avif_photo_in_the_folder_is_an_image_where_pillow_reads_it(tmp_path: Path):
    from PIL import Image
    if ".avif" not in Image.registered_extensions():
        pytest.skip("this Pillow has no AVIF support")
    images = tmp_path / "images"
    write_image(images / "a.avif", fmt="AVIF")
    project, log = open_studio(images, None, tmp_path / "data")
    assert [e.file_name for e in project.images()] == ["a.avif"], log


# ---------------------------------------------------- no usable category: training says so in one line


@pytest.mark.parametrize("categories, why", [
    ([{"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}], "the first: categories[0] in only.json: category id 1 is "
                                                            "claimed by 2 entries of different names"),
    ([], "(its 'categories' list is empty)"),
])
def test_training_refuses_a_file_without_a_usable_category_in_one_line(tmp_path: Path, capsys, categories, why):
    from training.cli import main
    write_image(tmp_path / "images" / "a.png")
    path = write_json(tmp_path / "only.json", {"images": [image(1, "a.png")], "categories": categories,
                                               "annotations": [ann(1, 1)]})
    capsys.readouterr()
    code = main(["--train-json", str(path), "--image-root", str(tmp_path / "images"), "--preset", "tiny",
                 "--max-iters", "1", "--batch-size", "1", "--output-dir", str(tmp_path / "run"), "--device", "cpu",
                 "--num-workers", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert f"error: only.json: none of its categories could be used, and a model needs at least one class" in err
    assert why in err


# ------------------------------------- a phone photo whose JSON gives the size before its EXIF rotation


def test_a_size_given_before_exif_rotation_is_refused_saying_the_sides_are_swapped(sqlite_store: Store,
                                                                                  tmp_path: Path):
    import numpy as np
    from PIL import Image
    photo = Image.fromarray(np.zeros((24, 32, 3), np.uint8))      # stored 32x24, shown 24x32
    exif = photo.getexif()
    exif[0x0112] = 6
    (tmp_path / "images").mkdir()
    photo.save(tmp_path / "images" / "phone.jpg", exif=exif)
    write_image(tmp_path / "images" / "b.png")
    path = write_json(tmp_path / "exif.json", {"images": [image(1, "phone.jpg"), image(2, "b.png")],
                                               "categories": [{"id": 1, "name": "p"}],
                                               "annotations": [ann(1, 1), ann(2, 2)]})
    dataset = sqlite_store.create_dataset("exif", tmp_path / "images")
    report = sqlite_store.import_coco(dataset, path)
    assert_lines(report.lines(), [
        "refused: images[0] (id 1) 'phone.jpg' in exif.json: the JSON says 32x24 (width x height) but the file is "
        "24x32 (after EXIF orientation) (the two sides swapped: a tool that ignores the photo's EXIF rotation"])
    assert store_masks(sqlite_store, dataset) == {"b.png": [48]}
    project, log = open_studio(tmp_path / "images", path, tmp_path / "data")      # launch.py: the same words
    assert any("(the two sides swapped" in line and "phone.jpg" in line for line in log), log
