"""Generated fuzz test of the one COCO reader: random mixes of the shapes real files take (ids of
every kind, short and outside rings, RLE of both kinds and of wrong sizes, bad boxes, unknown
categories). The reader must never crash (only CocoFormatError for a file that is not COCO at all),
never hang, and what it accepts must equal what pycocotools decodes from the same segmentation."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annotations import CocoFormatError
from annotations.coco_parse import parse_coco
from annotations.rle import decode_mask
import fastinst.images  # noqa: F401  the reader's pixel limit, imported once outside the timed reads


def random_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    y0, x0 = rng.integers(0, height), rng.integers(0, width)
    mask[y0:y0 + rng.integers(1, height), x0:x0 + rng.integers(1, width)] = 1
    if rng.random() < 0.3:
        mask[rng.integers(0, height), rng.integers(0, width)] ^= 1
    return mask


def random_ring(rng: np.random.Generator, height: int, width: int) -> list:
    kind = rng.choice(["inside"] * 6 + ["outside"] * 3 + ["short", "odd", "absurd", "empty", "text", "nan"])
    points = int(rng.integers(3, 8))
    if kind == "short":
        points = int(rng.integers(0, 3))
    xs = rng.uniform(0, width, points)
    ys = rng.uniform(0, height, points)
    if kind == "outside":
        xs = xs + rng.uniform(-width, width, points)
        ys = ys + rng.uniform(-height, height, points)
    ring = [float(round(v, 2)) for pair in zip(xs, ys) for v in pair]
    if kind == "odd" and ring:
        ring = ring[:-1]
    if kind == "absurd" and ring:
        ring[0] = 2e8
    if kind == "empty":
        ring = []
    if kind == "text" and ring:
        ring[1] = "x"
    if kind == "nan" and ring:
        ring[2] = float("nan")
    return ring


def random_segmentation(rng: np.random.Generator, height: int, width: int):
    kind = rng.choice(["polygon"] * 4 + ["rle"] * 2 + ["uncompressed"] * 2 + ["wrong_size", "garbage", "none", "number"])
    if kind == "polygon":
        return [random_ring(rng, height, width) for _ in range(int(rng.integers(0 if rng.random() < 0.1 else 1, 4)))]
    mask = random_mask(rng, height, width)
    rle = mask_utils.encode(np.asfortranarray(mask))
    if kind == "rle":
        return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
    if kind == "uncompressed":
        flat = mask.flatten(order="F")
        changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
        runs = np.diff(np.concatenate([[0], changes]))[: -1 if flat[-1] == 0 else None].tolist()
        runs = runs if sum(runs) == height * width else runs + [height * width - sum(runs)]
        if rng.random() < 0.2:
            runs = runs[:-1]
        return {"size": [height, width], "counts": runs}
    if kind == "wrong_size":
        return {"size": [width, height + 1], "counts": rle["counts"].decode("ascii")}
    if kind == "garbage":
        return {"size": [height, width], "counts": "~~" + "".join(rng.choice(list("0123abc"), 5))}
    return None if kind == "none" else 7


def random_id(rng: np.random.Generator, pool: list):
    kind = rng.choice(["int"] * 6 + ["str", "str", "dup", "float", "bool"])
    if kind == "str":
        return f"id-{rng.integers(0, 1000)}"
    if kind == "dup" and pool:
        return pool[int(rng.integers(0, len(pool)))]
    if kind == "float":
        return float(rng.integers(0, 1000))
    return True if kind == "bool" else int(rng.integers(0, 1000))


def random_document(rng: np.random.Generator) -> dict:
    images, image_ids = [], []
    for index in range(int(rng.integers(0 if rng.random() < 0.05 else 1, 4))):
        image_id = random_id(rng, image_ids)
        image_ids.append(image_id)
        images.append({"id": image_id, "file_name": f"im{index if rng.random() > 0.1 else 0}.png",
                       "width": int(rng.integers(4, 40)), "height": int(rng.integers(4, 40))})
    categories = [{"id": k, "name": f"c{k}"} for k in range(3)]
    if rng.random() < 0.2:
        categories.append({"id": int(rng.integers(0, 4)), "name": "maybe a duplicate id"})
    annotations = []
    for _ in range(int(rng.integers(0, 8))):
        image = images[int(rng.integers(0, len(images)))] if images else {"id": 999, "width": 9, "height": 9}
        ann = {"id": random_id(rng, [a["id"] for a in annotations]), "image_id": image["id"],
               "category_id": int(rng.choice([0, 1, 2, 0, 1, 2, 0, 1, 2, 7])),
               "segmentation": random_segmentation(rng, image["height"], image["width"]),
               "iscrowd": int(rng.choice([0] * 8 + [1, 2]))}
        if rng.random() < 0.5:
            ann["bbox"] = [float(v) for v in rng.uniform(-5, 20, 4)]
        if rng.random() < 0.5:
            ann["area"] = float(rng.uniform(-5, 50))
        annotations.append(ann)
    return {"images": images, "categories": categories, "annotations": annotations}


def expected_mask(segmentation, height: int, width: int) -> np.ndarray:
    """pycocotools' own decoding of a segmentation, keeping the rings the reader keeps."""
    if isinstance(segmentation, list):
        rings = [r for r in segmentation if len(r) >= 6 and len(r) % 2 == 0]
        return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(rings, height, width))).astype(bool)
    if isinstance(segmentation["counts"], list):
        return mask_utils.decode(mask_utils.frPyObjects(segmentation, height, width)).astype(bool)
    return mask_utils.decode({"size": segmentation["size"], "counts": segmentation["counts"].encode()}).astype(bool)


def check_document(document: dict) -> None:
    original = copy.deepcopy(document)
    started = time.perf_counter()
    try:
        parsed = parse_coco(document, "fuzz.json")
    except CocoFormatError:
        return
    assert time.perf_counter() - started < 2.0
    assert document == original or str(document) == str(original)  # the input is never modified
    sizes = {image.coco_id: (image.height, image.width) for image in parsed.images}
    assert len({a.coco_id for a in parsed.annotations}) == len(parsed.annotations)
    assert len({i.coco_id for i in parsed.images}) == len(parsed.images)
    for ann in parsed.annotations:
        raw = document["annotations"][ann.index]
        height, width = sizes[ann.image_coco_id]
        mask = decode_mask(ann.rle_counts, height, width)
        assert np.array_equal(mask, expected_mask(raw["segmentation"], height, width)), raw
        assert ann.area == mask.sum() > 0
        rows, cols = np.nonzero(mask)
        assert ann.bbox == (cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1)
        assert ann.category_id in {c.coco_id for c in parsed.categories}
    check_what_the_store_can_hold(document, parsed)
    refused = {f.where for f in parsed.report.refused}
    accepted_positions = {a.index for a in parsed.annotations}
    for position in range(len(document["annotations"])):
        if position not in accepted_positions:  # every left-out annotation is named in the report
            assert any(where.startswith(f"annotations[{position}]") for where in refused), position


def check_what_the_store_can_hold(document: dict, parsed) -> None:
    """Ids in the store's range, standard JSON only, one image per file, nothing on a shared id."""
    import json
    import posixpath
    for item in (*parsed.images, *parsed.categories, *parsed.annotations):
        assert 0 <= item.coco_id <= 2**31 - 1
        json.dumps(item.extra, allow_nan=False)
    json.dumps(parsed.info, allow_nan=False)
    assert len({i.file_name for i in parsed.images}) == len(parsed.images)
    files: dict = {}
    for raw in document["images"]:
        if isinstance(raw, dict) and isinstance(raw.get("file_name"), str):
            key = (type(raw.get("id")) is bool, raw.get("id")) if not isinstance(raw.get("id"), (list, dict)) else None
            files.setdefault(key, set()).add(posixpath.normpath(raw["file_name"].replace("\\", "/")))
    for ann in parsed.annotations:
        image_id = document["annotations"][ann.index]["image_id"]
        key = (type(image_id) is bool, image_id)
        assert len(files.get(key, ())) <= 1, (image_id, files[key])


@pytest.mark.parametrize("seed", range(4))
def test_reader_never_crashes_and_agrees_with_pycocotools(seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(150):
        check_document(random_document(rng))


@pytest.mark.slow
def test_reader_fuzz_long_run():
    rng = np.random.default_rng(1234)
    for _ in range(20000):
        check_document(random_document(rng))


def test_ids_of_another_type_are_read_and_each_reported() -> None:
    document = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                "categories": [{"id": 2, "name": "circle"}],
                "annotations": [{"id": 7, "image_id": 1.0, "category_id": "2", "iscrowd": 0,
                                 "segmentation": [[1, 1, 5, 1, 5, 5]]}]}
    parsed = parse_coco(document, "typed.json")
    assert [(a.image_coco_id, a.category_id) for a in parsed.annotations] == [(1, 2)]
    assert parsed.report.lines() == [
        "repaired: annotations[0] (id 7) in typed.json: image_id 1.0 read as the integer 1",
        "repaired: annotations[0] (id 7) in typed.json: category_id '2' read as the integer 2"]
    with pytest.raises(CocoFormatError, match="image_id 1.0 read as the integer 1 .strict mode"):
        parse_coco(document, "typed.json", strict=True)


def test_a_category_name_given_twice_is_one_class_and_reported() -> None:
    square = [[1, 1, 5, 1, 5, 5, 1, 5]]
    document = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                "categories": [{"id": 1, "name": "circle"}, {"id": 4, "name": "circle"}],
                "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": square},
                                {"id": 2, "image_id": 1, "category_id": 4, "segmentation": square}]}
    parsed = parse_coco(document, "twice.json")
    assert [c.name for c in parsed.categories] == ["circle"]
    assert [a.category_id for a in parsed.annotations] == [1, 1]
    assert parsed.report.lines() == ["repaired: categories[1] (id 4) in twice.json: the name 'circle' is also "
                                     "categories[0] (id 1): its annotations are read as category 1"]


# ------------------------------------------- files as tools write them: numbers, ids, names, image bytes


def odd_number(rng: np.random.Generator):
    """A value that JSON readers accept but a store may not hold."""
    return [float("nan"), float("inf"), float("-inf"), 10**400, 2**70, -3, 1e308 * 10][int(rng.integers(0, 7))]


def odd_extra(rng: np.random.Generator, depth: int = 0):
    kind = rng.choice(["number", "odd", "text", "list", "dict"] if depth < 3 else ["number", "odd", "text"])
    if kind == "number":
        return float(rng.uniform(-5, 5))
    if kind == "odd":
        return odd_number(rng)
    if kind == "text":
        return "x"
    if kind == "list":
        return [odd_extra(rng, depth + 1) for _ in range(int(rng.integers(0, 3)))]
    return {f"k{k}": odd_extra(rng, depth + 1) for k in range(int(rng.integers(0, 3)))}


def odd_id(rng: np.random.Generator, pool: list):
    kind = rng.choice(["plain"] * 4 + ["odd", "bool", "float", "str", "dup"])
    if kind == "odd":
        return odd_number(rng)
    if kind == "bool":
        return bool(rng.integers(0, 2))
    if kind == "float":
        return float(rng.integers(0, 9)) + float(rng.choice([0.0, 0.5]))
    if kind == "str":
        return str(rng.integers(0, 9))
    if kind == "dup" and pool:
        return pool[int(rng.integers(0, len(pool)))]
    return int(rng.integers(0, 9))


NAMES = ["a.png", "./a.png", "sub/../a.png", "b.png", "sub\\c.png", "sub//c.png", "sub/c.png", "d.jpg"]


def odd_document(rng: np.random.Generator) -> dict:
    """A file with the faults of issue 20 mixed in: non-finite and huge numbers anywhere, ids of
    every type and size, one id on two files, one file under several spellings and ids."""
    images, ids = [], []
    for _ in range(int(rng.integers(1, 5))):
        image_id = odd_id(rng, ids)
        ids.append(image_id)
        entry = {"id": image_id, "file_name": NAMES[int(rng.integers(0, len(NAMES)))], "width": 32, "height": 24}
        if rng.random() < 0.3:
            entry["meta"] = odd_extra(rng)
        if rng.random() < 0.1:
            entry["width"] = odd_number(rng)
        images.append(entry)
    categories = [{"id": odd_id(rng, []) if rng.random() < 0.3 else 1, "name": "part"}]
    if rng.random() < 0.3:
        categories[0]["extra"] = odd_extra(rng)
    annotations = []
    for _ in range(int(rng.integers(0, 6))):
        ring = [float(v) for v in rng.uniform(0, 24, 8)]
        if rng.random() < 0.15:
            ring[int(rng.integers(0, 8))] = odd_number(rng)
        entry = {"id": odd_id(rng, [a["id"] for a in annotations]), "image_id": images[int(rng.integers(0, len(images)))]["id"],
                 "category_id": categories[0]["id"], "segmentation": [ring], "iscrowd": 0}
        for key in ("bbox", "area", "attributes", "score"):
            if rng.random() < 0.2:
                entry[key] = odd_extra(rng) if key == "attributes" else (
                    [odd_number(rng), 1, 2, 3] if key == "bbox" else odd_number(rng))
        annotations.append(entry)
    document = {"images": images, "categories": categories, "annotations": annotations}
    if rng.random() < 0.3:
        document["info"] = odd_extra(rng)
    return document


def image_bytes(rng: np.random.Generator, name: str) -> bytes:
    """A real 32x24 image, maybe truncated, with flipped bytes, or not an image at all."""
    import io
    from PIL import Image
    buffer = io.BytesIO()
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, "JPEG" if name.endswith(".jpg") else "PNG")
    data = bytearray(buffer.getvalue())
    kind = rng.choice(["good"] * 3 + ["cut", "flip", "garbage"])
    if kind == "cut":
        return bytes(data[:int(rng.integers(1, len(data)))])
    if kind == "flip":
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
    if kind == "garbage":
        return rng.bytes(int(rng.integers(0, 64)))
    return bytes(data)


def check_image_bytes(path: Path) -> None:
    """The image loader reads a file or refuses it naming it; nothing else escapes."""
    from fastinst import ImageError
    from fastinst.images import decoded_size, load_image
    try:
        size = decoded_size(path)
    except ImageError as error:
        assert path.name in str(error)
        return
    try:
        assert load_image(path).shape == (size[1], size[0], 3)
    except ImageError as error:    # decoded once; a second decode may still meet what Pillow let pass
        assert path.name in str(error)


def check_import_and_export(store, root: Path, document: dict, tag: str) -> None:
    """Imported with a report, or refused naming the item; the store exports standard JSON after."""
    import json
    path = root / f"{tag}.json"
    path.write_text(json.dumps(document))
    dataset = store.create_dataset(tag, root / "images")
    try:
        report = store.import_coco(dataset, path)
    except CocoFormatError as error:
        assert f"{tag}.json" in str(error), str(error)
    else:
        assert report.lines()[0].startswith("imported ")
        assert report.annotations_added == sum(i.num_annotations for i in store.list_images(dataset))
    text = store.export_coco(dataset, root / f"{tag}.out.json").read_text()
    exported = json.loads(text, parse_constant=lambda token: pytest.fail(f"{token} in the export of {tag}"))
    assert all(0 <= a["id"] <= 2**31 - 1 for a in exported["annotations"])


def fuzz_files(tmp_path: Path, seed: int, documents: int) -> None:
    from annotations import Store
    rng = np.random.default_rng(seed)
    with Store(f"sqlite:///{tmp_path / 'fuzz.db'}") as store:
        for number in range(documents):
            images = tmp_path / "images"
            for name in ("a.png", "b.png", "sub/c.png", "d.jpg"):
                (images / name).parent.mkdir(parents=True, exist_ok=True)
                (images / name).write_bytes(image_bytes(rng, name))
                check_image_bytes(images / name)
            document = odd_document(rng)
            check_document(copy.deepcopy(document))
            check_import_and_export(store, tmp_path, document, f"fuzz{seed}-{number}")


@pytest.mark.parametrize("seed", range(2))
def test_odd_files_import_with_a_report_or_are_refused_by_name_and_always_export(tmp_path: Path, seed: int):
    fuzz_files(tmp_path, seed, 12)


@pytest.mark.slow
def test_odd_files_long_run(tmp_path: Path):
    for seed in range(100, 110):
        fuzz_files(tmp_path / str(seed), seed, 60)
