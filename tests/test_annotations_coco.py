"""COCO import -> export -> import round trips, judged by pycocotools, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from scipy import ndimage

from annotations import Store

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def load_coco(path: Path) -> COCO:
    """pycocotools' view of a file (silencing its prints)."""
    coco = COCO()
    coco.dataset = json.loads(Path(path).read_text())
    coco.createIndex()
    return coco


def masks_by_id(coco: COCO) -> dict[int, np.ndarray]:
    return {ann_id: coco.annToMask(ann) for ann_id, ann in coco.anns.items()}


def assert_same_dataset(expected: COCO, actual: COCO) -> None:
    """Same images, categories, annotation ids, crowd flags and masks pixel for pixel."""
    assert {i: (im["file_name"], im["width"], im["height"]) for i, im in expected.imgs.items()} == {
        i: (im["file_name"], im["width"], im["height"]) for i, im in actual.imgs.items()
    }
    assert {c: cat["name"] for c, cat in expected.cats.items()} == {
        c: cat["name"] for c, cat in actual.cats.items()
    }
    assert set(expected.anns) == set(actual.anns)
    for ann_id, ann in expected.anns.items():
        other = actual.anns[ann_id]
        assert (ann["image_id"], ann["category_id"], ann["iscrowd"]) == (
            other["image_id"], other["category_id"], other["iscrowd"]), ann_id
        assert np.array_equal(expected.annToMask(ann), actual.annToMask(other)), ann_id


def test_round_trip_is_identical_for_pycocotools(store: Store, coco_file: Path, tmp_path: Path):
    first = store.create_dataset("first", coco_file.parent / "images")
    report = store.import_coco(first, coco_file)
    assert (report.images_added, report.annotations_added, report.categories_added) == (5, 8, 4)
    assert (report.polygons, report.rle_compressed, report.rle_uncompressed, report.crowd) == (
        4, 2, 2, 1)
    assert report.images_without_annotations == 2 and report.files_checked == 5
    exported = store.export_coco(first, tmp_path / "out" / "export1.json")

    second = store.create_dataset("second", coco_file.parent / "images")
    store.import_coco(second, exported)
    exported_again = store.export_coco(second, tmp_path / "out" / "export2.json")

    original = load_coco(coco_file)
    assert_same_dataset(original, load_coco(exported))
    assert_same_dataset(original, load_coco(exported_again))
    assert json.loads(exported.read_text()) == json.loads(exported_again.read_text())


def test_export_keeps_holes_and_computes_bbox_area_with_pycocotools(
    store: Store, coco_file: Path, tmp_path: Path
):
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    exported = load_coco(store.export_coco(dataset, tmp_path / "e.json"))
    ring = exported.annToMask(exported.anns[102])
    assert ring[30, 20] == 0 and ring[30, 30] == 1  # the hole survives
    for ann in exported.anns.values():
        rle = exported.annToRLE(ann)
        assert ann["area"] == float(coco_mask.area(rle))
        assert ann["bbox"] == coco_mask.toBbox(rle).tolist()
        assert isinstance(ann["segmentation"], dict)  # RLE by default


def test_export_keeps_extra_keys_info_and_licenses(
    store: Store, coco_file: Path, tmp_path: Path, make_coco_document
):
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    data = json.loads(store.export_coco(dataset, tmp_path / "e.json").read_text())
    original = make_coco_document()
    assert data["info"] == original["info"] and data["licenses"] == original["licenses"]
    images = {image["id"]: image for image in data["images"]}
    assert images[3]["license"] == 1 and images[11]["date_captured"] == "2024-05-01"
    anns = {ann["id"]: ann for ann in data["annotations"]}
    assert anns[101]["attributes"] == {"occluded": True}
    cats = {cat["id"]: cat for cat in data["categories"]}
    assert cats[1]["supercategory"] == "animal" and cats[17]["keypoints"] == []
    assert [image["id"] for image in data["images"]] == [3, 7, 10, 11, 42]


def test_polygon_export_never_changes_a_mask(store: Store, coco_file: Path, tmp_path: Path):
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    original = load_coco(coco_file)
    kept: list[int] = []
    polygons = load_coco(store.export_coco(dataset, tmp_path / "p.json", polygons=True, kept_rle=kept))
    for ann_id, ann in polygons.anns.items():
        expected = original.annToMask(original.anns[ann_id]).astype(bool)
        has_hole = not np.array_equal(ndimage.binary_fill_holes(expected), expected)
        if ann["iscrowd"] or has_hole:  # crowd regions and masks with holes stay RLE
            assert isinstance(ann["segmentation"], dict)
        else:
            assert isinstance(ann["segmentation"], list)
        assert (ann_id in kept) == (has_hole and not ann["iscrowd"])
        decoded = polygons.annToMask(ann).astype(bool)
        assert np.array_equal(decoded, expected), ann_id
        assert ann["area"] == decoded.sum()
    assert kept, "the fixture has a mask with a hole"


def test_import_into_subfolder_root_and_image_path(store: Store, coco_file: Path):
    root = coco_file.parent
    dataset = store.create_dataset("d", root)
    store.import_coco(dataset, coco_file, image_root=root / "images")
    images = {image.file_name: image for image in store.list_images(dataset)}
    assert store.image_path(images["a/img3.png"].id) == root / "images" / "a" / "img3.png"
    assert images["a/img3.png"].content_hash is not None
    exported = json.loads(store.export_coco(dataset, root / "e.json").read_text())
    assert "a/img3.png" in {image["file_name"] for image in exported["images"]}


def _review_fixture(store: Store, coco_file: Path) -> tuple[int, dict[str, int]]:
    """Dataset with proposed and rejected predictions on image 42 and a reviewed image 7 holding
    a human annotation (a reviewed image holds no undecided proposal)."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    images = {image.coco_id: image for image in store.list_images(dataset)}
    image = images[42]
    mask = np.zeros((30, 40), bool)
    mask[5:10, 5:20] = True
    ids = store.replace_predictions(image.id, np.stack([mask, ~mask]), [1, 5], [0.9, 0.4], "m1")
    store.set_state(ids[1], "rejected")
    human = store.add_annotation(images[7].id, np.roll(mask, 12, axis=0).T, 90)
    store.set_review_state(images[7].id, "reviewed")
    return dataset, {"proposed": ids[0], "rejected": ids[1], "human": human}


def test_export_filters_by_state_and_review(store: Store, coco_file: Path, tmp_path: Path):
    dataset, ids = _review_fixture(store, coco_file)
    accepted = load_coco(store.export_coco(dataset, tmp_path / "a.json"))
    everything = load_coco(store.export_coco(dataset, tmp_path / "b.json", include="all"))
    reviewed = load_coco(store.export_coco(dataset, tmp_path / "c.json", only_reviewed=True))
    human = store.annotation(ids["human"]).coco_id
    proposed = store.annotation(ids["proposed"]).coco_id
    assert human in accepted.anns and proposed not in accepted.anns
    assert proposed in everything.anns and everything.anns[proposed]["score"] == 0.9
    assert store.annotation(ids["rejected"]).coco_id not in everything.anns
    assert set(reviewed.imgs) == {7} and set(reviewed.anns) == {human}
    assert len(accepted.anns) == 9 and len(accepted.imgs) == 5


def test_results_export_loads_with_pycocotools(store: Store, coco_file: Path, tmp_path: Path):
    dataset, ids = _review_fixture(store, coco_file)
    gt = load_coco(store.export_coco(dataset, tmp_path / "gt.json"))
    results_path = store.export_results(dataset, tmp_path / "results.json")
    results = json.loads(results_path.read_text())
    assert sorted(r["score"] for r in results) == [0.4, 0.9]  # rejected predictions included
    detections = gt.loadRes(str(results_path))
    by_score = {ann["score"]: ann for ann in detections.anns.values()}
    expected = store.annotation(ids["proposed"]).mask
    assert np.array_equal(detections.annToMask(by_score[0.9]).astype(bool), expected)
    assert by_score[0.9]["image_id"] == 42 and by_score[0.9]["category_id"] == 1
    assert json.loads(store.export_results(dataset, tmp_path / "r2.json",
                                           model_version="other").read_text()) == []


def test_import_predictions_keeps_scores_and_proposes(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    document = make_coco_document()
    for ann in document["annotations"]:
        ann["score"] = ann["id"] / 1000
    path = write_coco_files(coco_file.parent, document, "predictions.json")
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, path, source="predicted")
    image = next(image for image in store.list_images(dataset) if image.coco_id == 3)
    anns = store.annotations(image.id)
    assert {(a.source, a.state) for a in anns} == {("predicted", "proposed")}
    assert sorted(a.score for a in anns) == [0.1, 0.101, 0.102]


def test_import_merges_into_existing_images(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    image = next(image for image in store.list_images(dataset) if image.coco_id == 42)
    document = make_coco_document()
    document["annotations"] = [
        {"id": 900, "image_id": 42, "category_id": 5, "segmentation": [[1, 1, 9, 1, 9, 9]]}
    ]
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "more.json"))
    assert (report.images_added, report.images_existing, report.annotations_added) == (0, 5, 1)
    assert report.categories_existing == 4
    assert [a.coco_id for a in store.annotations(image.id)] == [900]
    assert store.image(image.id).revision == image.revision + 1
    assert "imported 0 new images" in report.summary()


def test_uploading_the_file_again_never_brings_back_what_a_person_changed(store: Store, coco_file: Path):
    """The project was made from a file; a person corrected a mask, relabelled, rejected and deleted
    annotations and marked the image reviewed. Uploading the same file again (the studio's upload,
    ``match_by_name``) adds nothing: each annotation is named with what became of it, the person's
    versions stay, and the image stays reviewed."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    image = max(store.list_images(dataset), key=lambda i: i.num_annotations)
    anns = store.annotations(image.id)
    assert len(anns) >= 3
    edited, rejected, deleted = anns[0], anns[1], anns[2]
    grown = edited.mask.copy()
    grown[:2, :2] = True
    store.update_mask(edited.id, grown)
    store.set_state(rejected.id, "rejected")
    store.delete_annotation(deleted.id)
    store.set_review_state(image.id, "reviewed", undecided="reject")
    before = {a.id: (a.category_id, a.rle_counts, a.state) for a in store.annotations(image.id, include_rejected=True)}
    total = sum(i.num_annotations for i in store.list_images(dataset))

    report = store.import_coco(dataset, coco_file, match_by_name=True)
    assert report.annotations_added == 0 and not report.reopened
    lines = "\n".join(report.lines())
    assert f"annotation {edited.coco_id} had this mask and class and was since edited by a person" in lines
    assert f"annotation {rejected.coco_id}, rejected)" in lines or "rejected by a person" in lines
    assert f"annotation {deleted.coco_id} had this mask and class and was deleted by a person" in lines
    after = {a.id: (a.category_id, a.rle_counts, a.state) for a in store.annotations(image.id, include_rejected=True)}
    assert after == before and store.image(image.id).review_state == "reviewed"
    assert sum(i.num_annotations for i in store.list_images(dataset)) == total


def test_an_upload_adding_to_a_reviewed_image_sets_it_back_to_in_progress(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    image = next(image for image in store.list_images(dataset) if image.coco_id == 42)
    store.set_review_state(image.id, "reviewed", undecided="reject")
    document = make_coco_document()
    document["annotations"] = [
        {"id": 900, "image_id": 42, "category_id": 5, "segmentation": [[1, 1, 9, 1, 9, 9]]}
    ]
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "more.json"), match_by_name=True)
    assert report.annotations_added == 1
    assert store.image(image.id).review_state == "in_progress"
    assert any(f"'{image.file_name}' was reviewed and got 1 annotations" in line for line in report.lines())


def test_a_changed_copy_of_the_project_file_updates_what_nobody_touched(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    """The file the project was made from, changed in another tool (ids kept): a polygon moved on
    an annotation nobody touched in the studio, one a person corrected moved too, a relabel, a
    renamed category, a new annotation, one left out. Merged: the untouched ones are updated (one
    undo takes them back), the person's version stays, the class is not split, nothing is
    duplicated, and the left-out annotation stays."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    img3 = next(i for i in store.list_images(dataset) if i.coco_id == 3)
    by_coco = {a.coco_id: a for a in store.annotations(img3.id)}
    corrected = by_coco[101].mask.copy()
    corrected[:3, :3] = True
    store.update_mask(by_coco[101].id, corrected)              # a person's correction of 101

    document = make_coco_document()
    square = [[2, 2, 22, 2, 22, 16, 2, 16], [30, 20, 50, 20, 40, 40]]     # 100's first part a little larger
    for ann in document["annotations"]:
        if ann["id"] in (100, 101):
            ann["segmentation"] = square if ann["id"] == 100 else [[47, 0, 64, 0, 64, 48, 53, 48]]
        if ann["id"] == 207:
            ann["category_id"] = 1                             # relabelled zebra -> cat
    document["categories"][2]["name"] = "striped horse"        # 90 renamed in the other tool
    document["annotations"] = [a for a in document["annotations"] if a["id"] != 301]
    document["annotations"].append({"id": 400, "image_id": 42, "category_id": 5, "iscrowd": 0,
                                    "segmentation": [[1, 1, 9, 1, 9, 9]]})
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "changed.json"),
                               match_by_name=True)
    lines = "\n".join(report.lines())
    assert (report.annotations_added, report.annotations_updated, report.categories_added) == (1, 2, 0), lines
    assert "the same object as annotation 101" in lines and "a person changed in the studio: the person's version is kept" in lines
    assert "category 90 is 'striped horse' in changed.json and 'zebra' in the project" in lines
    assert "not in changed.json (ids 301): kept" in lines

    out = load_coco(store.export_coco(dataset, coco_file.parent / "out.json"))
    assert sorted(c["name"] for c in out.cats.values()) == ["cat", "dog", "unused", "zebra"]
    assert len(out.anns) == 9                                  # 8 + the new one, no twin of a changed one
    expected_100 = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(square, 48, 64))).astype(bool)
    assert np.array_equal(out.annToMask(out.anns[100]).astype(bool), expected_100)
    assert np.array_equal(out.annToMask(out.anns[101]).astype(bool), corrected)
    assert out.anns[207]["category_id"] == 1 and 301 in out.anns

    store.undo(img3.id)                                        # the merge's edit of that image
    assert next(a for a in store.annotations(img3.id) if a.coco_id == 100).rle_counts == by_coco[100].rle_counts
    again = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "changed.json"),
                              match_by_name=True)              # the undone version is remembered
    assert again.annotations_added == 0 and again.annotations_updated == 0


def test_a_file_made_elsewhere_with_clashing_ids_updates_nothing(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    """Ids that mean nothing here (more than half of the annotations with a stored id differ): no
    update, the file's changed annotations come in as new ones beside the project's."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    document = make_coco_document()
    for k, ann in enumerate(document["annotations"][:5]):
        ann["segmentation"] = [[k, k, k + 9, k, k + 9, k + 9, k, k + 9]]
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "other.json"),
                               match_by_name=True)
    assert report.annotations_updated == 0 and report.annotations_added == 5


def test_an_export_opened_in_a_fresh_project_keeps_its_review_states(store: Store, coco_file: Path, tmp_path: Path):
    """The studio's export carries each image's review state; a new project made from it has the
    same reviewed images, "reviewed, no objects" ones included, and exports the same file."""
    first = store.create_dataset("first", coco_file.parent / "images")
    store.import_coco(first, coco_file)
    images = {i.coco_id: i for i in store.list_images(first)}
    store.set_review_state(images[3].id, "reviewed")
    store.set_review_state(images[42].id, "reviewed")           # no annotations: reviewed, no objects
    exported = store.export_coco(first, tmp_path / "reviewed.json", only_reviewed=True)

    second = store.create_dataset("second", coco_file.parent / "images")
    report = store.import_coco(second, exported)
    assert report.images_reviewed == 2 and "2 of them reviewed" in report.summary()
    states = {i.coco_id: i.review_state for i in store.list_images(second)}
    assert states == {3: "reviewed", 42: "reviewed"}
    again = json.loads(store.export_coco(second, tmp_path / "again.json", only_reviewed=True).read_text())
    assert again["images"] == json.loads(exported.read_text())["images"]
    assert_same_dataset(load_coco(exported), load_coco(tmp_path / "again.json"))


def test_a_foreign_file_whose_category_ids_clash_keeps_its_own_classes(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    """A file made elsewhere: its category 1 is 'car' (the project's 1 is 'cat', which the file
    does not name), its annotation ids clash with the project's but their masks differ. Its cars
    stay cars (a new class), never the project's cats."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    document = make_coco_document()
    document["categories"] = [{"id": 1, "name": "car"}]
    document["annotations"] = [{"id": 100 + k, "image_id": 3, "category_id": 1, "iscrowd": 0,
                                "segmentation": [[k, k, k + 5, k, k + 5, k + 5, k, k + 5]]} for k in range(3)]
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "foreign.json"),
                               match_by_name=True)
    assert (report.categories_added, report.annotations_added, report.annotations_updated) == (1, 3, 0)
    out = load_coco(store.export_coco(dataset, coco_file.parent / "out.json"))
    car = next(c for c, cat in out.cats.items() if cat["name"] == "car")
    assert sum(a["category_id"] == car for a in out.anns.values()) == 3
    assert not any("in the project: its annotations are" in line for line in report.lines())


def test_a_reviewed_image_missing_a_refused_annotation_is_not_reviewed(store: Store, coco_file: Path, tmp_path: Path):
    """A reviewed export edited elsewhere, one annotation of a reviewed image now broken: a new
    project made from it has that image in progress (not a complete statement any more), the
    other reviewed image reviewed."""
    first = store.create_dataset("first", coco_file.parent / "images")
    store.import_coco(first, coco_file)
    images = {i.coco_id: i for i in store.list_images(first)}
    for coco_id in (3, 10):
        store.set_review_state(images[coco_id].id, "reviewed")
    document = json.loads(store.export_coco(first, tmp_path / "reviewed.json", only_reviewed=True).read_text())
    broken = next(a for a in document["annotations"] if a["image_id"] == 3)
    broken["segmentation"] = [[1, 2, 3]]                       # a ring of three numbers
    (tmp_path / "edited.json").write_text(json.dumps(document))
    second = store.create_dataset("second", coco_file.parent / "images")
    report = store.import_coco(second, tmp_path / "edited.json")
    states = {i.coco_id: i.review_state for i in store.list_images(second)}
    assert states == {3: "in_progress", 10: "reviewed"}
    assert any("is reviewed in the file, but annotations of it were refused" in line for line in report.lines())


def test_an_upload_keeps_the_files_ids_the_project_never_gave(
    store: Store, coco_file: Path, make_coco_document, write_coco_files
):
    """Ids the project never gave keep the file's number (a person joins the export back to their
    file by id); ids the project uses are renumbered and the report names each."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    document = make_coco_document()
    document["categories"] = [{"id": 50, "name": "car"}, {"id": 5, "name": "bus"}]   # 5 is the project's dog
    document["annotations"] = [
        {"id": 900, "image_id": 3, "category_id": 50, "iscrowd": 0, "segmentation": [[1, 1, 9, 1, 9, 9]]},
        {"id": 100, "image_id": 3, "category_id": 5, "iscrowd": 0, "segmentation": [[30, 30, 39, 30, 39, 39]]}]
    report = store.import_coco(dataset, write_coco_files(coco_file.parent, document, "mine.json"),
                               match_by_name=True)
    out = load_coco(store.export_coco(dataset, coco_file.parent / "out.json"))
    names = {c: cat["name"] for c, cat in out.cats.items()}
    assert names[50] == "car" and names[5] == "dog"
    bus = next(c for c, n in names.items() if n == "bus")
    assert 900 in out.anns and out.anns[900]["category_id"] == 50
    assert [a["id"] for a in out.anns.values() if a["category_id"] == bus] != [100]   # 100 is the project's
    assert any(f"category 'bus' 5 -> {bus}" in line for line in report.lines()), report.lines()


def _grow(segmentation: list, by: int) -> list:
    """A polygon moved ``by`` pixels outwards on its right edge (a labeler's small correction)."""
    xs = [v for k, v in enumerate(segmentation[0]) if k % 2 == 0]
    right = max(xs)
    return [[v + by if k % 2 == 0 and v == right else v for k, v in enumerate(segmentation[0])]]


def test_merges_match_objects_by_mask_not_by_id(store: Store, coco_file: Path, make_coco_document,
                                                write_coco_files, tmp_path: Path):
    """Another tool's rounds on the project's file (found by a new-user helper): ids swapped and one
    object corrected (the correction goes to that object, nothing is overwritten); most objects
    corrected (updated, not duplicated); a second round (updated again, not refused as a person's
    edit); an object a person deleted, changed by the file (stays deleted); an import that adds
    objects is undone by the image's undo, not the person's earlier edit."""
    dataset = store.create_dataset("d", coco_file.parent / "images")
    store.import_coco(dataset, coco_file)
    img10 = next(i for i in store.list_images(dataset) if i.coco_id == 10)
    masks = lambda: {a.coco_id: (a.category_id, a.rle_counts) for a in store.annotations(img10.id)}  # noqa: E731

    def merge(document: dict, name: str):
        return store.import_coco(dataset, write_coco_files(tmp_path, document, name), match_by_name=True)

    first = make_coco_document()
    by_id = {a["id"]: a for a in first["annotations"]}
    by_id[207]["segmentation"] = _grow(by_id[207]["segmentation"], 3)        # 207 corrected ...
    by_id[206]["id"], by_id[207]["id"] = 207, 206                            # ... and the two ids swapped
    before = masks()
    report = merge(first, "round1.json")
    after = masks()
    assert report.annotations_added == 0 and report.annotations_updated == 1, report.lines()
    assert after[206] == before[206] and after[207] != before[207] and len(after) == len(before)

    second = make_coco_document()                                            # round 2: 207 corrected further
    second["annotations"][5]["segmentation"] = _grow(second["annotations"][5]["segmentation"], 5)
    report = merge(second, "round2.json")
    assert report.annotations_updated == 1 and report.annotations_added == 0, report.lines()
    assert any("annotation 207" in line and "updated" in line for line in report.lines()), report.lines()

    crowd = next(a for a in store.annotations(img10.id) if a.coco_id == 205)
    store.delete_annotation(crowd.id)                                        # a person deletes 205
    third = make_coco_document()
    third["annotations"][3]["segmentation"] = [[40, 5, 78, 5, 78, 26, 40, 26]]   # 205 a little changed
    third["annotations"].append({"id": 950, "image_id": 10, "category_id": 1, "iscrowd": 0,
                                 "segmentation": [[60, 40, 75, 40, 75, 55, 60, 55]]})
    report = merge(third, "round3.json")
    assert report.annotations_added == 1 and 205 not in masks(), report.lines()
    assert any("a person deleted" in line for line in report.lines()), report.lines()
    store.undo(img10.id)                                                     # takes back the import ...
    assert 950 not in masks() and 205 not in masks()                         # ... not the person's delete
