"""Bad COCO input through the store, on SQLite and on PostgreSQL.

Each case imports a broken variant of the round-trip document into a store that already holds data.
By default the one COCO reader repairs or refuses the faulty item, names it by the file's own ids,
JSON position and file name in the report, and imports the rest; with ``strict=True`` the same
finding refuses the whole file and every row of every table is compared before and after.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable, Iterator

import pytest

from annotations import CocoFormatError, Store

pytest_plugins = ["conftest_pg"]


class Loaded:
    """A store holding the round-trip document in dataset ``loaded`` and an empty ``target``."""

    def __init__(self, store: Store, folder: Path, loaded: int, target: int) -> None:
        self.store, self.folder, self.loaded, self.target = store, folder, loaded, target


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory) -> Iterator[Loaded]:
    from conftest_pg import write_coco

    folder = tmp_path_factory.mktemp("validation")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'studio.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    store = Store(url, user="tester")
    loaded_id = store.create_dataset("loaded", folder / "images")
    store.import_coco(loaded_id, write_coco(folder))
    target = store.create_dataset("target", folder / "images")
    yield Loaded(store, folder, loaded_id, target)
    store.close()


def _write(folder: Path, document: dict, name: str) -> Path:
    from conftest_pg import write_coco

    return write_coco(folder, document, name)


def _expect_rejected(loaded: Loaded, snapshot_db, path: Path, error: type, message: str, *,
                     dataset: int | None = None, exact: bool = False, strict: bool = True) -> None:
    before = snapshot_db(loaded.store)
    with pytest.raises(error) as caught:
        loaded.store.import_coco(dataset or loaded.target, path, strict=strict)
    if exact:
        assert str(caught.value) == message
    else:
        assert message in str(caught.value)
    assert snapshot_db(loaded.store) == before


Mutation = Callable[[dict], None]

# (name, mutation, what the report says, what the default mode does with it)
CASES: list[tuple[str, Mutation, str, str]] = [
    ("unknown category", lambda d: d["annotations"][1].update(category_id=999),
     "annotations[1] (id 101) in bad.json: category_id 999 is not in categories", "refused"),
    ("duplicate annotation id", lambda d: d["annotations"][3].update(id=100),
     "annotations[3] (id 100) in bad.json: annotation id 100 is also annotations[0]'s: given id 302 (the object "
     "is kept)", "repaired"),
    ("duplicate image id", lambda d: d["images"][1].update(id=3),
     "images[0] (id 3) 'a/img3.png' in bad.json: image id 3 is claimed by 2 entries of different files "
     "(images[0] 'a/img3.png', images[1] 'img10.png'): which picture an annotation of it lies on cannot be told",
     "refused"),
    ("duplicate category id", lambda d: d["categories"][2].update(id=5),
     "in bad.json: category id 5 is claimed by 2 entries of different names (categories[1] 'dog', "
     "categories[2] 'zebra'): which class an annotation of it is cannot be told", "refused"),
    ("duplicate file name", lambda d: d["images"][4].update(file_name="img10.png"),
     "'img10.png' in bad.json: the same file as images[1] (id 10) 'img10.png' but 30x40 (width x height), not "
     "80x60", "refused"),
    ("unknown image", lambda d: d["annotations"][4].update(image_id=77),
     "annotations[4] (id 206) in bad.json: image_id 77 is not in images", "refused"),
    ("polygon too short", lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5]]),
     "annotations[0] (id 100) in bad.json: no polygon ring with at least 3 points (polygon 0 has 4 "
     "coordinates)", "refused"),
    ("short ring beside a good one",
     lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5], [2, 2, 20, 2, 20, 20]]),
     "annotations[0] (id 100) in bad.json: polygon 0 has 4 coordinates; a ring needs at least 3 points "
     "(6 numbers, x and y in pairs): ring dropped", "repaired"),
    ("polygon not numbers", lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, "x", 2, 2]]),
     "annotations[0] (id 100) in bad.json: polygon 0 must be a list of numbers", "refused"),
    ("negative polygon point", lambda d: d["annotations"][7]["segmentation"][1].__setitem__(3, -0.5),
     "annotations[7] (id 301) in bad.json: 1 polygon points lie outside the 50x50 image: clipped to "
     "the image", "repaired"),
    ("absurd polygon point", lambda d: d["annotations"][7]["segmentation"][1].__setitem__(3, 2e8),
     "annotations[7] (id 301) in bad.json: polygon point (49, 2e+08) lies absurdly far outside the "
     "50x50 image (refused before rasterising)", "refused"),
    ("RLE of the wrong size", lambda d: d["annotations"][2]["segmentation"].update(size=[64, 48]),
     "annotations[2] (id 102) in bad.json: RLE size [64, 48] does not match the 64x48 image "
     "(expected [48, 64], height first)", "refused"),
    ("compressed RLE of another size",
     lambda d: d["annotations"][6]["segmentation"].update(counts="0X10"),
     "annotations[6] (id 300) in bad.json: RLE counts cover 40 pixels but the 50x50 image has 2500",
     "refused"),
    ("malformed compressed RLE", lambda d: d["annotations"][2]["segmentation"].update(counts="1~"),
     "annotations[2] (id 102) in bad.json: malformed compressed RLE counts: character '~'", "refused"),
    ("uncompressed RLE too short",
     lambda d: d["annotations"][3]["segmentation"].update(counts=[100, 20, 30]),
     "annotations[3] (id 205) in bad.json: RLE counts cover 150 pixels but the 80x60 image has 4800",
     "refused"),
    ("bad iscrowd", lambda d: d["annotations"][0].update(iscrowd=2),
     "annotations[0] (id 100) in bad.json: 'iscrowd' must be 0 or 1, got 2", "refused"),
    ("string image id", lambda d: d["images"][3].update(id="empty-42"),
     "images[3] (id 'empty-42') 'empty42.png' in bad.json: string id 'empty-42' mapped to integer id", "repaired"),
    ("integral string image id", lambda d: d["images"][3].update(id=str(d["images"][3]["id"])),
     "'empty42.png' in bad.json: string id '42' read as the integer 42", "repaired"),
    ("no image size", lambda d: [d["images"][3].pop(k) for k in ("width", "height")],
     "'empty42.png' in bad.json: no width/height: the file's size", "repaired"),
    ("box only", lambda d: (d["annotations"][5].pop("segmentation"), d["annotations"][5].update(bbox=[1, 1, 5, 5])),
     "annotations[5] (id 207) in bad.json: only a bbox, no 'segmentation': an instance needs a mask", "refused"),
    ("negative bbox", lambda d: d["annotations"][0].update(bbox=[5, 5, -3, 4]),
     "annotations[0] (id 100) in bad.json: bbox [5, 5, -3, 4] replaced by the mask's", "repaired"),
    ("no segmentation", lambda d: d["annotations"][5].pop("segmentation"),
     "annotations[5] (id 207) in bad.json: no 'segmentation' (polygon or RLE)", "refused"),
]


@pytest.mark.parametrize("name, mutate, message, action", CASES, ids=[c[0] for c in CASES])
def test_strict_mode_refuses_the_file_and_writes_nothing(
    loaded: Loaded, snapshot_db, make_coco_document, name: str, mutate: Mutation, message: str, action: str
):
    document = make_coco_document()
    mutate(document)
    path = _write(loaded.folder, document, "bad.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, message)


@pytest.mark.parametrize("name, mutate, message, action", CASES, ids=[c[0] for c in CASES])
def test_default_mode_reports_the_item_and_imports_the_rest(
    loaded: Loaded, make_coco_document, name: str, mutate: Mutation, message: str, action: str
):
    document = make_coco_document()
    total = len(document["annotations"])
    mutate(document)
    dataset = loaded.store.create_dataset(f"default {name}", loaded.folder / "images")
    report = loaded.store.import_coco(dataset, _write(loaded.folder, document, "bad.json"))
    lines = report.lines()
    assert any(line.startswith(f"{action}: ") and message in line for line in lines), lines
    if name == "duplicate image id":   # both pictures of id 3 and all 6 annotations on them or image 10
        assert report.images_added == 3 and report.annotations_added == total - 6
        return
    if name == "duplicate category id":   # 'dog' and 'zebra' share id 5: no annotation of either is read
        known = {c["id"] for c in document["categories"]} - {5}
        assert report.annotations_added == sum(a["category_id"] in known for a in document["annotations"]) > 0
        return
    assert report.annotations_added >= total - 3 and report.images_added >= 4
    if action == "repaired" and name != "short ring beside a good one":
        assert report.annotations_added == total


def test_polygon_outside_the_image_is_clipped_to_it(loaded: Loaded):
    images = [{"id": i, "file_name": f"p{i}.png", "width": 32, "height": 32} for i in range(3)]
    images.append({"id": 3, "file_name": "a.jpg", "width": 640, "height": 480})
    document = {
        "images": images,
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 17, "image_id": 3, "category_id": 1,
                         "segmentation": [[10, 10, 600, 20, 812.0, 40.0, 100, 400]]}],
    }
    dataset = loaded.store.create_dataset("outside", loaded.folder)
    report = loaded.store.import_coco(dataset, _write(loaded.folder, document, "outside.json"),
                                      check_files=False)
    assert report.lines()[1] == ("repaired: annotations[0] (id 17) in outside.json: 1 polygon points lie "
                                 "outside the 640x480 image: clipped to the image")
    image = next(i for i in loaded.store.list_images(dataset) if i.file_name == "a.jpg")
    [ann] = loaded.store.annotations(image.id)
    assert ann.mask[:, 639].any() and ann.mask.shape == (480, 640)


@pytest.mark.parametrize("text, message", [
    ('{"images": [}', "not valid JSON: Expecting value at line 1 column 13"),
    ('[1, 2]', "the top level must be a JSON object, not list"),
    ('{"categories": []}', "missing the 'images' list"),
    ('{"images": [], "categories": [], "annotations": {}}', "'annotations' must be a list, not dict"),
    ('\udcff', "cannot read the file"),
])
def test_malformed_json_is_rejected(loaded: Loaded, snapshot_db, text: str, message: str):
    path = loaded.folder / "malformed.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, f"malformed.json: {message}", strict=False)


def test_missing_image_file_is_named(loaded: Loaded, snapshot_db, make_coco_document):
    document = make_coco_document()
    document["images"][2]["file_name"] = "gone/missing.png"
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] != 11]
    path = loaded.folder / "missing.json"
    path.write_text(json.dumps(document))
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError,
                     "images[2] (id 11) 'gone/missing.png' in missing.json: image not found: "
                     f"{loaded.folder / 'images' / 'gone' / 'missing.png'}")
    dataset = loaded.store.create_dataset("missing file", loaded.folder / "images")
    report = loaded.store.import_coco(dataset, path)
    assert report.images_added == len(document["images"]) - 1
    assert any("image not found" in line and line.startswith("refused: images[2]") for line in report.lines())


def test_image_size_disagreeing_with_the_file_is_refused(
    loaded: Loaded, snapshot_db, make_coco_document
):
    document = make_coco_document()
    document["images"][3]["width"] = 41
    path = _write(loaded.folder, document, "size.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError,
                     "images[3] (id 42) 'empty42.png' in size.json: the JSON says 41x30 (width x height) "
                     "but the file is 40x30")


def test_clash_found_after_inserts_rolls_everything_back(
    loaded: Loaded, snapshot_db, make_coco_document
):
    """New categories and images are inserted before the clashing annotation id is found."""
    document = make_coco_document()
    document["categories"].append({"id": 60, "name": "new"})
    document["images"].append({"id": 500, "file_name": "new.png", "width": 20, "height": 20})
    document["annotations"] = [
        {"id": 100, "image_id": 500, "category_id": 60, "segmentation": [[1, 1, 9, 1, 9, 9]]}
    ]
    path = _write(loaded.folder, document, "clash.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError,
                     "annotations[0] (id 100) in clash.json: annotation id 100 already exists in dataset "
                     "'loaded'", dataset=loaded.loaded, strict=False)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["categories"][1].update(name="wolf"),
     "categories[1]: category id 5 is 'wolf' in the file but 'dog' in dataset 'loaded'"),
    (lambda d: d["images"][1].update(id=12),
     "images[1] (id 12) 'img10.png': dataset 'loaded' already has this file as image id 10 (80x60); "
     "the file says id 12 (80x60)"),
])
def test_clash_with_existing_dataset_is_rejected(
    loaded: Loaded, snapshot_db, make_coco_document, mutate: Mutation, message: str
):
    document = make_coco_document()
    mutate(document)
    document["annotations"] = []
    path = _write(loaded.folder, document, "clash2.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, message,
                     dataset=loaded.loaded, exact=True, strict=False)


def test_good_import_after_rejections_still_works(loaded: Loaded, make_coco_document):
    document = copy.deepcopy(make_coco_document())
    dataset = loaded.store.create_dataset("good", loaded.folder / "images")
    report = loaded.store.import_coco(dataset, _write(loaded.folder, document, "ok.json"))
    assert report.annotations_added == 8 and report.findings.findings == []
