"""The store -> COCO JSON (instances file, or results file for predictions).

By default masks are written as compressed RLE with ``iscrowd`` as stored, which every COCO reader
(pycocotools ``annToMask``) decodes to exactly the stored pixels, holes included. ``polygons=True``
writes non-crowd masks as pixel-edge polygons instead, but only where pycocotools rasterises the
polygons back to exactly the stored pixels; a mask with a hole (which a COCO polygon cannot
describe: its parts are unioned) stays RLE, so an export never changes a mask, and ``area`` and
``bbox`` always agree with the written segmentation. Ids are the COCO ids kept in the store, so a
re-export of the same data gives the same ids; ``bbox`` and ``area`` come from pycocotools. Keys the
imported file had beyond the standard ones are written back. Files are written atomically, as
standard JSON: a non-finite number a store holds (older versions stored NaN from unknown keys) is
written as null and reported.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from annotations import rle
from annotations.atomic import atomic_write_json
from annotations.coco_parse import finite_json
from annotations.database import read_session
from annotations.errors import InvalidInputError, NotFoundError
from annotations.polygons import mask_to_polygons
from annotations.schema import Annotation, Category, Dataset, Image

INCLUDE_STATES = {"accepted": ("accepted",), "all": ("accepted", "proposed")}


def export_coco(
    engine: Engine,
    dataset_id: int,
    out_path: str | os.PathLike[str],
    *,
    only_reviewed: bool = False,
    include: str = "accepted",
    polygons: bool = False,
    kept_rle: list[int] | None = None,
    repaired: list[str] | None = None,
) -> Path:
    """Write the dataset as a COCO instances file; returns the path written.

    Args:
        only_reviewed: only images whose review state is ``reviewed``.
        include: ``"accepted"`` (annotations in state accepted: imported ground truth, human
            annotations, accepted predictions) or ``"all"`` (also still-proposed predictions).
            Rejected annotations are never exported as objects.
        polygons: write non-crowd masks as polygons where that is exact (see the module docstring).
        kept_rle: when given, the COCO ids of the annotations that stayed RLE although
            ``polygons`` was asked for are appended to it.
        repaired: when given, one line per value the file could not hold is appended to it: a
            non-finite number (NaN, Infinity) that a store written before the import refused
            them holds in an item's extra keys is written as ``null`` (the file stays standard
            JSON, RFC 8259, which browsers and other tools read).

    Images without (exported) annotations are kept: they are true negatives.
    """
    if include not in INCLUDE_STATES:
        raise InvalidInputError(f"include must be one of {sorted(INCLUDE_STATES)}, got {include!r}")
    with read_session(engine) as session:
        document = build_coco(
            session, dataset_id, only_reviewed=only_reviewed, include=include, polygons=polygons,
            kept_rle=kept_rle,
        )
    return _write_finite(out_path, document, repaired)


def export_results(
    engine: Engine,
    dataset_id: int,
    out_path: str | os.PathLike[str],
    *,
    model_version: str | None = None,
) -> Path:
    """Write the dataset's predictions (every state) in the COCO results format.

    Each entry is ``{"image_id", "category_id", "segmentation" (RLE), "bbox", "score"}`` with COCO
    ids, readable by ``COCO.loadRes``. A prediction without a score gets 1.0.
    """
    with read_session(engine) as session:
        _dataset(session, dataset_id)
        query = _annotation_query(dataset_id).where(Annotation.source == "predicted")
        if model_version is not None:
            query = query.where(Annotation.model_version == model_version)
        results = [_result_entry(row) for row in session.execute(query)]
    return _write_finite(out_path, {"results": results}, None)


def build_coco(
    session: Session, dataset_id: int, *, only_reviewed: bool, include: str, polygons: bool,
    kept_rle: list[int] | None = None,
) -> dict[str, Any]:
    """The COCO instances document for a dataset (see :func:`export_coco`)."""
    dataset = _dataset(session, dataset_id)
    image_query = select(Image).where(Image.dataset_id == dataset_id).order_by(Image.coco_id)
    if only_reviewed:
        image_query = image_query.where(Image.review_state == "reviewed")
    images = list(session.scalars(image_query))
    ann_query = _annotation_query(dataset_id).where(Annotation.state.in_(INCLUDE_STATES[include]))
    if only_reviewed:
        ann_query = ann_query.where(Image.review_state == "reviewed")
    info = dataset.coco_info or {}
    return {
        "info": info.get("info", {"description": dataset.name}),
        "licenses": info.get("licenses", []),
        "images": [_image_entry(image) for image in images],
        "annotations": [
            _annotation_entry(row, polygons, kept_rle) for row in session.execute(ann_query)
        ],
        "categories": [_category_entry(c) for c in _categories(session, dataset_id)],
    }


_ITEMS = {"images": "image", "annotations": "annotation", "categories": "category", "results": "result"}


def _write_finite(out_path: str | os.PathLike[str], document: dict[str, Any], repaired: list[str] | None) -> Path:
    """Write ``document`` (``{"results": [...]}`` is written as the bare list) as standard JSON;
    non-finite numbers are written as null, one line each in ``repaired``. The document is only
    walked when writing it as it is fails (JSON has no NaN), so a clean export costs nothing more."""
    def body() -> Any:
        return document["results"] if list(document) == ["results"] else document
    try:
        return atomic_write_json(out_path, body())
    except ValueError:     # "Out of range float values are not JSON compliant"
        lines = _make_finite(document)
    if repaired is not None:
        repaired.extend(lines)
    return atomic_write_json(out_path, body())


def _make_finite(document: dict[str, Any]) -> list[str]:
    """Replace, in place, every non-finite number of the document's items by None; one line each."""
    lines = []
    for key, value in document.items():
        items = value if key in _ITEMS else [value]
        for position, item in enumerate(items):
            cleaned, found = finite_json(item)
            if not found:
                continue
            items[position] = cleaned
            label = f"{_ITEMS[key]} {item.get('id', position) if isinstance(item, dict) else position}" \
                if key in _ITEMS else key
            lines += [f"{label}: {path} is not a finite number (JSON has none): written as null" for path in found]
        if key not in _ITEMS:
            document[key] = items[0]
    return lines


def _dataset(session: Session, dataset_id: int) -> Dataset:
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError(f"dataset {dataset_id} does not exist")
    return dataset


def _categories(session: Session, dataset_id: int) -> Iterable[Category]:
    return session.scalars(
        select(Category).where(Category.dataset_id == dataset_id).order_by(Category.coco_id)
    )


def _annotation_query(dataset_id: int) -> Select:
    return (
        select(
            Annotation.coco_id, Image.coco_id.label("image_coco_id"), Annotation.category_id,
            Annotation.rle_counts, Annotation.area, Annotation.bbox_x, Annotation.bbox_y,
            Annotation.bbox_w, Annotation.bbox_h, Annotation.iscrowd, Annotation.score,
            Annotation.source, Annotation.extra, Image.height, Image.width,
        )
        .join(Image, Image.id == Annotation.image_id)
        .where(Annotation.dataset_id == dataset_id)
        .order_by(Annotation.coco_id)
    )


def _with_extra(entry: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Standard keys first, then the imported file's other keys (never overriding ours)."""
    if extra:
        entry.update((key, value) for key, value in extra.items() if key not in entry)
    return entry


def _image_entry(image: Image) -> dict[str, Any]:
    """An image with its review state (``review_state``: a key COCO readers pass over; the import
    gives a new image that state, so a reviewed export opened elsewhere stays reviewed, "reviewed,
    no objects" included)."""
    entry = {"id": image.coco_id, "file_name": image.file_name,
             "width": image.width, "height": image.height, "review_state": image.review_state}
    return _with_extra(entry, image.extra)


def _category_entry(category: Category) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": category.coco_id, "name": category.name}
    if category.supercategory is not None:
        entry["supercategory"] = category.supercategory
    return _with_extra(entry, category.extra)


def _segmentation(row: Any, polygons: bool, kept_rle: list[int] | None) -> Any:
    if polygons and not row.iscrowd:
        outline = mask_to_polygons(rle.decode_mask(row.rle_counts, row.height, row.width))
        if outline and rle.polygons_to_counts(outline, row.height, row.width) == row.rle_counts:
            return outline
        if kept_rle is not None:
            kept_rle.append(row.coco_id)
    return {"size": [row.height, row.width], "counts": row.rle_counts}


def _annotation_entry(row: Any, polygons: bool, kept_rle: list[int] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": row.coco_id,
        "image_id": row.image_coco_id,
        "category_id": row.category_id,
        "segmentation": _segmentation(row, polygons, kept_rle),
        "area": float(row.area),
        "bbox": [row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h],
        "iscrowd": int(row.iscrowd),
    }
    if row.source == "predicted" and row.score is not None:
        entry["score"] = row.score
    return _with_extra(entry, row.extra)


def _result_entry(row: Any) -> dict[str, Any]:
    return {
        "image_id": row.image_coco_id,
        "category_id": row.category_id,
        "segmentation": {"size": [row.height, row.width], "counts": row.rle_counts},
        "bbox": [row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h],
        "score": 1.0 if row.score is None else row.score,
    }
