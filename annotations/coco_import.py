"""COCO instances JSON -> the store, all or nothing.

The file is parsed and validated completely (:mod:`annotations.coco_parse`), image files are checked
(existence, size, content hash), and only then is everything written in one transaction; any error,
including a clash with what the dataset already holds, rolls the whole import back.

Importing into a dataset that already has content merges: categories with the same COCO id must
have the same name, images with the same file name must have the same COCO id and size (their
annotations are added), and annotation ids must be new to the dataset.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from annotations.coco_parse import ParsedCoco, ParsedImage, load_json, parse_coco
from annotations.database import read_session, write_session
from annotations.errors import CocoFormatError, InvalidInputError, MissingImageError, NotFoundError
from annotations.schema import SOURCES, Annotation, Category, Dataset, Image, utc_now

_CHUNK = 5000


@dataclass
class ImportReport:
    """What an import did."""

    dataset_id: int
    json_path: Path
    source: str
    images_added: int = 0
    images_existing: int = 0
    images_without_annotations: int = 0
    categories_added: int = 0
    categories_existing: int = 0
    annotations_added: int = 0
    polygons: int = 0
    rle_compressed: int = 0
    rle_uncompressed: int = 0
    crowd: int = 0
    files_checked: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the user, e.g. ``imported 3 images, 12 annotations (...)``."""
        return (
            f"imported {self.images_added} new images ({self.images_existing} already present, "
            f"{self.images_without_annotations} without annotations), "
            f"{self.categories_added} new categories, {self.annotations_added} annotations "
            f"({self.polygons} polygons, {self.rle_compressed} compressed RLE, "
            f"{self.rle_uncompressed} uncompressed RLE, {self.crowd} crowd) "
            f"from {self.json_path.name} in {self.seconds:.2f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as a plain dict (paths as strings)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {key: str(v) if isinstance(v, Path) else v for key, v in values.items()}


def import_coco(
    engine: Engine,
    dataset_id: int,
    json_path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    source: str = "imported",
    check_files: bool = True,
    user: str = "import",
) -> ImportReport:
    """Import a COCO instances file into a dataset in one transaction.

    Args:
        engine: the store's engine.
        dataset_id: target dataset.
        json_path: the COCO instances JSON.
        image_root: where the file names point to; default the dataset's image root. Paths are
            stored relative to the dataset's root.
        source: ``"imported"`` (accepted ground truth), ``"predicted"`` (proposed, with scores)
            or ``"human"`` (accepted).
        check_files: require every image file to exist with the size the JSON says, and record
            its SHA-256.
        user: recorded as the author on images that already existed and got annotations.

    Raises:
        CocoFormatError: malformed file or a clash with the dataset (nothing is written).
        MissingImageError: an image file is missing (with ``check_files``; nothing is written).
    """
    started = time.perf_counter()
    if source not in SOURCES:
        raise InvalidInputError(f"source must be one of {SOURCES}, got {source!r}")
    path = Path(json_path)
    dataset_root = _dataset_root(engine, dataset_id)
    root = Path(image_root).resolve() if image_root is not None else dataset_root
    parsed = parse_coco(load_json(path), path, keep_scores=source == "predicted")
    report = ImportReport(dataset_id, path, source)
    if check_files:
        _check_files(parsed.images, root)
        report.files_checked = len(parsed.images)
    with write_session(engine) as session:
        _write(session, dataset_id, parsed, _relative_prefix(root, dataset_root), report, user)
    _count_kinds(parsed, report)
    report.seconds = time.perf_counter() - started
    return report


def _dataset_root(engine: Engine, dataset_id: int) -> Path:
    with read_session(engine) as session:
        root = session.scalar(select(Dataset.image_root).where(Dataset.id == dataset_id))
    if root is None:
        raise NotFoundError(f"dataset {dataset_id} does not exist")
    return Path(root)


def _relative_prefix(root: Path, dataset_root: Path) -> str:
    """Prefix turning a COCO file name under ``root`` into a path relative to the dataset root."""
    if root == dataset_root:
        return ""
    return os.path.relpath(root, dataset_root) + "/"


def _check_files(images: list[ParsedImage], root: Path) -> None:
    """Every image must exist, open as an image of the size the JSON says; records its hash."""
    for image in images:
        path = root / image.file_name
        if not path.is_file():
            raise MissingImageError(
                f"images[{image.index}] (id {image.coco_id}) '{image.file_name}': image file not "
                f"found at {path}"
            )
        try:
            with PILImage.open(path) as opened:
                width, height = opened.size
        except (UnidentifiedImageError, OSError) as error:
            raise CocoFormatError(f"{image.where}: cannot read the image file: {error}") from error
        if (width, height) != (image.width, image.height):
            raise CocoFormatError(
                f"{image.where}: the JSON says {image.width}x{image.height} but the file "
                f"{path} is {width}x{height}"
            )
        image.content_hash = file_sha256(path)


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _count_kinds(parsed: ParsedCoco, report: ImportReport) -> None:
    report.polygons = parsed.kinds.get("polygon", 0)
    report.rle_compressed = parsed.kinds.get("rle", 0)
    report.rle_uncompressed = parsed.kinds.get("rle_uncompressed", 0)
    report.crowd = sum(1 for ann in parsed.annotations if ann.iscrowd)
    report.annotations_added = len(parsed.annotations)
    with_annotations = {ann.image_coco_id for ann in parsed.annotations}
    report.images_without_annotations = sum(
        1 for image in parsed.images if image.coco_id not in with_annotations
    )


def _write(
    session: Session, dataset_id: int, parsed: ParsedCoco, prefix: str, report: ImportReport,
    user: str,
) -> None:
    """Insert everything (inside the caller's transaction); raise on clashes with the dataset."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None:
        raise NotFoundError(f"dataset {dataset_id} does not exist")
    _insert_categories(session, dataset, parsed, report)
    existing_images = _insert_images(session, dataset, parsed, prefix, report)
    image_ids = dict(
        session.execute(select(Image.coco_id, Image.id).where(Image.dataset_id == dataset.id)).all()
    )
    _insert_annotations(session, dataset, parsed, image_ids, report.source)
    _touch_existing_images(session, parsed, existing_images, image_ids, user)
    _advance_counters(dataset, parsed)
    if dataset.coco_info is None:
        dataset.coco_info = parsed.info


def _insert_categories(
    session: Session, dataset: Dataset, parsed: ParsedCoco, report: ImportReport
) -> None:
    existing = dict(
        session.execute(
            select(Category.coco_id, Category.name).where(Category.dataset_id == dataset.id)
        ).all()
    )
    rows = []
    for category in parsed.categories:
        if category.coco_id not in existing:
            rows.append(dict(
                dataset_id=dataset.id, coco_id=category.coco_id, name=category.name,
                supercategory=category.supercategory, extra=category.extra,
            ))
        elif existing[category.coco_id] != category.name:
            raise CocoFormatError(
                f"categories[{category.index}]: category id {category.coco_id} is "
                f"'{category.name}' in the file but '{existing[category.coco_id]}' in dataset "
                f"'{dataset.name}'"
            )
    if rows:
        session.execute(insert(Category), rows)
    report.categories_added = len(rows)
    report.categories_existing = len(parsed.categories) - len(rows)


def _insert_images(
    session: Session, dataset: Dataset, parsed: ParsedCoco, prefix: str, report: ImportReport
) -> set[int]:
    """Insert new images; returns the COCO ids of images the dataset already had."""
    by_name = {
        row.file_name: row
        for row in session.execute(
            select(Image.file_name, Image.coco_id, Image.width, Image.height)
            .where(Image.dataset_id == dataset.id)
        )
    }
    names_by_id = {row.coco_id: name for name, row in by_name.items()}
    rows, existing = [], set()
    for image in parsed.images:
        known = by_name.get(image.file_name)
        if known is not None:
            _check_same_image(image, known, dataset)
            existing.add(image.coco_id)
            continue
        if image.coco_id in names_by_id:
            raise CocoFormatError(
                f"{image.where}: image id {image.coco_id} is already used by "
                f"'{names_by_id[image.coco_id]}' in dataset '{dataset.name}'"
            )
        rows.append(dict(
            dataset_id=dataset.id, coco_id=image.coco_id, file_name=image.file_name,
            rel_path=prefix + image.file_name, width=image.width, height=image.height,
            content_hash=image.content_hash, review_state="unreviewed", revision=0,
            extra=image.extra,
        ))
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(Image.__table__), rows[start:start + _CHUNK])
    report.images_added, report.images_existing = len(rows), len(existing)
    return existing


def _check_same_image(image: ParsedImage, known: Any, dataset: Dataset) -> None:
    """An image already in the dataset under the same file name must be the same image."""
    same = (known.coco_id, known.width, known.height) == (image.coco_id, image.width, image.height)
    if not same:
        raise CocoFormatError(
            f"{image.where}: dataset '{dataset.name}' already has this file as image id "
            f"{known.coco_id} ({known.width}x{known.height}); the file says id {image.coco_id} "
            f"({image.width}x{image.height})"
        )


def _insert_annotations(
    session: Session, dataset: Dataset, parsed: ParsedCoco, image_ids: dict[int, int],
    source: str,
) -> None:
    _check_new_annotation_ids(session, dataset, parsed)
    state = "proposed" if source == "predicted" else "accepted"
    now = utc_now()
    rows = [
        dict(
            dataset_id=dataset.id, image_id=image_ids[ann.image_coco_id], coco_id=ann.coco_id,
            category_id=ann.category_id, rle_counts=ann.rle_counts, area=ann.area,
            bbox_x=ann.bbox[0], bbox_y=ann.bbox[1], bbox_w=ann.bbox[2], bbox_h=ann.bbox[3],
            iscrowd=ann.iscrowd, source=source, state=state, score=ann.score,
            model_version=None, extra=ann.extra, created_at=now,
        )
        for ann in parsed.annotations
    ]
    for start in range(0, len(rows), _CHUNK):
        session.execute(insert(Annotation.__table__), rows[start:start + _CHUNK])


def _check_new_annotation_ids(session: Session, dataset: Dataset, parsed: ParsedCoco) -> None:
    has_any = session.scalar(
        select(func.count()).select_from(Annotation).where(Annotation.dataset_id == dataset.id)
    )
    if not has_any:
        return
    taken = set(
        session.scalars(select(Annotation.coco_id).where(Annotation.dataset_id == dataset.id))
    )
    for index, ann in enumerate(parsed.annotations):
        if ann.coco_id in taken:
            raise CocoFormatError(
                f"annotations[{index}]: annotation id {ann.coco_id} already exists in dataset "
                f"'{dataset.name}'"
            )


def _touch_existing_images(
    session: Session, parsed: ParsedCoco, existing: set[int], image_ids: dict[int, int], user: str
) -> None:
    """Images that already existed and got annotations move to a new revision."""
    touched = {ann.image_coco_id for ann in parsed.annotations} & existing
    for coco_id in sorted(touched):
        session.execute(
            update(Image)
            .where(Image.id == image_ids[coco_id])
            .values(revision=Image.revision + 1, updated_at=utc_now(), updated_by=user,
                    last_action="import_coco (annotations added)")
        )


def _advance_counters(dataset: Dataset, parsed: ParsedCoco) -> None:
    """Keep the id counters above every imported id, so new items never reuse one."""
    def after(ids: list[int], current: int) -> int:
        return max([current, *(i + 1 for i in ids)])

    dataset.next_image_id = after([i.coco_id for i in parsed.images], dataset.next_image_id)
    dataset.next_category_id = after(
        [c.coco_id for c in parsed.categories], dataset.next_category_id
    )
    dataset.next_annotation_id = after(
        [a.coco_id for a in parsed.annotations], dataset.next_annotation_id
    )
