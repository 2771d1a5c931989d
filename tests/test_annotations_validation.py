"""Bad COCO input: an error naming the offending item, and a database left exactly as it was.

Each case imports a broken variant of the round-trip document into a store that already holds
data, on SQLite and on PostgreSQL, and compares every row of every table before and after.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Callable, Iterator

import pytest

from annotations import CocoFormatError, MissingImageError, Store

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
                     dataset: int | None = None, exact: bool = False) -> None:
    before = snapshot_db(loaded.store)
    with pytest.raises(error) as caught:
        loaded.store.import_coco(dataset or loaded.target, path)
    if exact:
        assert str(caught.value) == message
    else:
        assert message in str(caught.value)
    assert snapshot_db(loaded.store) == before


Mutation = Callable[[dict], None]

CASES: list[tuple[str, Mutation, str]] = [
    ("unknown category", lambda d: d["annotations"][1].update(category_id=999),
     "annotation id 101 in images[0] 'a/img3.png': category_id 999 is not in categories"),
    ("duplicate annotation id", lambda d: d["annotations"][3].update(id=100),
     "annotations[3]: duplicate annotation id 100 (also annotations[0])"),
    ("duplicate image id", lambda d: d["images"][1].update(id=3),
     "images[1] 'img10.png': duplicate image id 3 (also images[0])"),
    ("duplicate category id", lambda d: d["categories"][2].update(id=5),
     "categories[2] 'zebra': duplicate category id 5 (also categories[1])"),
    ("duplicate file name", lambda d: d["images"][4].update(file_name="img10.png"),
     "images[4] 'img10.png': duplicate file_name (also images[1])"),
    ("unknown image", lambda d: d["annotations"][4].update(image_id=77),
     "annotations[4] (id 206): image_id 77 is not in images"),
    ("polygon too short", lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5]]),
     "annotation id 100 in images[0] 'a/img3.png': polygon 0 has 4 coordinates"),
    ("polygon not numbers", lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, "x", 2, 2]]),
     "annotation id 100 in images[0] 'a/img3.png': polygon 0 must be a list of numbers"),
    ("negative polygon point", lambda d: d["annotations"][7]["segmentation"][1].__setitem__(3, -0.5),
     "annotation id 301 in images[2] 'img11.png': polygon point (49.0, -0.5) lies outside the "
     "50x50 image"),
    ("RLE of the wrong size", lambda d: d["annotations"][2]["segmentation"].update(size=[64, 48]),
     "annotation id 102 in images[0] 'a/img3.png': RLE size [64, 48] does not match the 64x48 "
     "image (expected [48, 64], height first)"),
    ("compressed RLE of another size",
     lambda d: d["annotations"][6]["segmentation"].update(counts="0X10"),
     "annotation id 300 in images[2] 'img11.png': RLE counts cover 40 pixels but the 50x50 image "
     "has 2500"),
    ("malformed compressed RLE", lambda d: d["annotations"][2]["segmentation"].update(counts="1~"),
     "annotation id 102 in images[0] 'a/img3.png': malformed compressed RLE counts: character '~'"),
    ("uncompressed RLE too short",
     lambda d: d["annotations"][3]["segmentation"].update(counts=[100, 20, 30]),
     "annotation id 205 in images[1] 'img10.png': RLE counts cover 150 pixels but the 80x60 image "
     "has 4800"),
    ("bad iscrowd", lambda d: d["annotations"][0].update(iscrowd=2),
     "annotation id 100 in images[0] 'a/img3.png': 'iscrowd' must be 0 or 1, got 2"),
    ("non-integer id", lambda d: d["images"][0].update(id="3"),
     "images[0] 'a/img3.png': 'id' must be an integer, got '3'"),
    ("missing annotations key type", lambda d: d.update(annotations={}),
     "'annotations' must be a list, not dict"),
    ("no segmentation", lambda d: d["annotations"][5].pop("segmentation"),
     "annotation id 207 in images[1] 'img10.png': 'segmentation' must be a list of polygons or an "
     "RLE object, got NoneType"),
]


@pytest.mark.parametrize("name, mutate, message", CASES, ids=[c[0] for c in CASES])
def test_bad_document_is_rejected_and_nothing_written(
    loaded: Loaded, snapshot_db, make_coco_document, name: str, mutate: Mutation, message: str
):
    document = make_coco_document()
    mutate(document)
    path = _write(loaded.folder, document, "bad.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, message)


def test_polygon_outside_the_image_names_point_and_image(loaded: Loaded, snapshot_db):
    images = [{"id": i, "file_name": f"p{i}.png", "width": 32, "height": 32} for i in range(3)]
    images.append({"id": 3, "file_name": "a.jpg", "width": 640, "height": 480})
    document = {
        "images": images,
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [{"id": 17, "image_id": 3, "category_id": 1,
                         "segmentation": [[10, 10, 600, 20, 812.0, 40.0, 100, 400]]}],
    }
    path = _write(loaded.folder, document, "outside.json")
    message = ("annotation id 17 in images[3] 'a.jpg': polygon point (812.0, 40.0) lies outside "
               "the 640x480 image")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, message, exact=True)


@pytest.mark.parametrize("text, message", [
    ('{"images": [}', "not valid JSON: Expecting value at line 1 column 13"),
    ('[1, 2]', "the top level must be a JSON object, not list"),
    ('{"categories": []}', "missing the 'images' list"),
    ('\udcff', "cannot read the file"),
])
def test_malformed_json_is_rejected(loaded: Loaded, snapshot_db, text: str, message: str):
    path = loaded.folder / "malformed.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError, f"{path}: {message}")


def test_missing_image_file_is_named(loaded: Loaded, snapshot_db, make_coco_document):
    document = make_coco_document()
    document["images"][2]["file_name"] = "gone/missing.png"
    document["annotations"] = [a for a in document["annotations"] if a["image_id"] != 11]
    path = loaded.folder / "missing.json"
    path.write_text(json.dumps(document))
    expected = (f"images[2] (id 11) 'gone/missing.png': image file not found at "
                f"{loaded.folder / 'images' / 'gone' / 'missing.png'}")
    _expect_rejected(loaded, snapshot_db, path, MissingImageError, expected, exact=True)


def test_image_size_disagreeing_with_the_file_is_rejected(
    loaded: Loaded, snapshot_db, make_coco_document
):
    document = make_coco_document()
    document["images"][3]["width"] = 41
    path = _write(loaded.folder, document, "size.json")
    _expect_rejected(loaded, snapshot_db, path, CocoFormatError,
                     "images[3] 'empty42.png': the JSON says 41x30 but the file")


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
                     "annotations[0]: annotation id 100 already exists in dataset 'loaded'",
                     dataset=loaded.loaded, exact=True)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["categories"][1].update(name="wolf"),
     "categories[1]: category id 5 is 'wolf' in the file but 'dog' in dataset 'loaded'"),
    (lambda d: d["images"][1].update(id=12),
     "images[1] 'img10.png': dataset 'loaded' already has this file as image id 10 (80x60); "
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
                     dataset=loaded.loaded, exact=True)


def test_good_import_after_rejections_still_works(loaded: Loaded, make_coco_document):
    document = copy.deepcopy(make_coco_document())
    report = loaded.store.import_coco(loaded.target, _write(loaded.folder, document, "ok.json"))
    assert report.annotations_added == 8
