"""Make an uploaded COCO file agree with the project's ids before the store imports it.

``Store.import_coco`` merges into a dataset only when the file's ids agree with it: an image with
a known file name must keep its COCO id, a category id must keep its name, and annotation ids must
be new. A file exported elsewhere rarely agrees (and the studio's own predictions already use
annotation ids 1, 2, ...), so the studio rewrites a copy: images are matched by file name,
categories by name, and annotations get fresh ids. Nothing else in the file changes; a file that
is not even a COCO-shaped JSON object is passed through untouched, so the store reports what is
wrong with it.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def dataset_ids(store: Any, dataset_id: int) -> tuple[dict[str, int], dict[str, int], int]:
    """(file name -> COCO image id, category name -> COCO id, largest COCO annotation id)."""
    images = store.list_images(dataset_id)
    max_ann = 0
    for image in images:
        for ann in store.annotations(image.id, include_rejected=True):
            max_ann = max(max_ann, ann.coco_id)
    return ({i.file_name: i.coco_id for i in images},
            {c.name: c.id for c in store.categories(dataset_id)}, max_ann)


def remap(coco: dict[str, Any], by_file: dict[str, int], by_name: dict[str, int], max_ann: int) -> dict[str, Any]:
    """A copy of ``coco`` with ids made to agree with the dataset (see the module docstring)."""
    image_map = _assign([(im["id"], im["file_name"]) for im in coco["images"]], by_file)
    category_map = _assign([(c["id"], c["name"]) for c in coco["categories"]], by_name)
    out = dict(coco)
    out["images"] = [{**im, "id": image_map[im["id"]]} for im in coco["images"]]
    out["categories"] = [{**c, "id": category_map[c["id"]]} for c in coco["categories"]]
    out["annotations"] = [
        {**a, "id": max_ann + 1 + k, "image_id": image_map.get(a["image_id"], a["image_id"]),
         "category_id": category_map.get(a["category_id"], a["category_id"])}
        for k, a in enumerate(coco["annotations"])]
    return out


def _assign(items: list[tuple[Any, str]], known: dict[str, int]) -> dict[Any, int]:
    """old id -> new id: the dataset's id for a known key, else a fresh id above all used ones."""
    used = set(known.values())
    next_id = max(used, default=0) + 1
    mapping: dict[Any, int] = {}
    for old, key in items:
        if key in known:
            mapping[old] = known[key]
        else:
            while next_id in used:
                next_id += 1
            mapping[old] = next_id
            used.add(next_id)
    return mapping


def prepare_import(store: Any, dataset_id: int, json_path: Path, out_dir: Path) -> Path:
    """The path to import: a remapped copy in ``out_dir``, or the original when it cannot be read
    as a COCO instances object (the store's import then names the problem)."""
    try:
        coco = json.loads(Path(json_path).read_text())
        remapped = remap(coco, *dataset_ids(store, dataset_id))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Path(json_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"import-{Path(json_path).stem}.json"
    out.write_text(json.dumps(remapped))
    return out
