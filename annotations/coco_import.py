"""COCO instances JSON -> the store, in one transaction.

The file is read by the one COCO reader (:mod:`annotations.coco_parse`), which repairs what can be
repaired and refuses, item by item, what cannot (with ``strict`` it refuses the whole file
instead); image files are checked through the one image loader (existence, size after EXIF
orientation, pixel limit) and hashed. Then everything accepted is written in one transaction; a
clash with what the dataset already holds rolls the whole import back. The report lists every
repair and refusal by the person's own ids, JSON positions and file name.

Importing into a dataset that already has content merges: categories with the same COCO id must
have the same name, images with the same file name must have the same COCO id and size (their
annotations are added), and annotation ids must be new to the dataset. With ``match_by_name`` (the
studio's upload) the file's ids need not agree: images are matched by file name, categories by
name, and annotations get fresh ids; findings still name the file's own ids.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, insert, select
from sqlalchemy.orm import Session

from annotations import history
from annotations.coco_parse import (CocoReport, ParsedAnnotation, ParsedCoco, ParsedImage, normal_file_name,
                                     read_coco)
from annotations.database import read_session, write_session
from annotations.errors import CocoFormatError, InvalidInputError, NotFoundError
from annotations.history import ChangeLog
from annotations.schema import REVIEW_STATES, SOURCES, Annotation, Category, Dataset, Edit, Image, utc_now

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
    findings: CocoReport | None = None
    reopened: list[str] = field(default_factory=list)   # reviewed images that got annotations
    annotations_updated: int = 0
    images_reviewed: int = 0      # new images the file marks reviewed (our export's review_state)
    merged: list[str] = field(default_factory=list)     # what a merge did to what the project held

    @property
    def file_name(self) -> str:
        return self.findings.file_name if self.findings else self.json_path.name

    def summary(self) -> str:
        """One line for the user, e.g. ``imported 3 images, 12 annotations (...)``."""
        repairs = ""
        if self.findings and self.findings.findings:
            repairs = (f"; {len(self.findings.repaired)} repaired, {len(self.findings.refused)} refused "
                       f"(see the report)")
        return (
            f"imported {self.images_added} new images ("
            + (f"{self.images_reviewed} of them reviewed, " if self.images_reviewed else "")
            + f"{self.images_existing} already present, "
            f"{self.images_without_annotations} without annotations), "
            f"{self.categories_added} new categories, {self.annotations_added} annotations "
            + (f"and {self.annotations_updated} updated " if self.annotations_updated else "")
            + f"({self.polygons} polygons, {self.rle_compressed} compressed RLE, "
            f"{self.rle_uncompressed} uncompressed RLE, {self.crowd} crowd) "
            f"from {self.file_name} in {self.seconds:.2f} s{repairs}"
        )

    def lines(self) -> list[str]:
        """The summary, then one line per change a merge made to what the project held, per reviewed
        image set back to in progress and per repair or refusal."""
        return [self.summary(), *self.merged, *self.reopened, *(self.findings.lines() if self.findings else [])]

    def as_dict(self) -> dict[str, Any]:
        """The report as a plain dict (paths as strings, findings as lines)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["findings"] = self.findings.lines() if self.findings else []
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
    strict: bool = False,
    match_by_name: bool = False,
    display_name: str | None = None,
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
        check_files: require every image file to exist, open and have the size the JSON says
            (images that do not are refused by name), and record its SHA-256.
        user: recorded as the author on images that already existed and got annotations.
        strict: refuse the whole file at the first repair or refusal.
        match_by_name: match images by file name and categories by name, give annotations fresh
            ids (for a file made elsewhere; see the module docstring).
        display_name: the file's name in messages (an upload's own name, not a temporary path).

    Raises:
        CocoFormatError: not a COCO file, no usable image, a clash with the dataset, or any
            finding with ``strict`` (nothing is written).
    """
    started = time.perf_counter()
    if source not in SOURCES:
        raise InvalidInputError(f"source must be one of {SOURCES}, got {source!r}")
    path = Path(json_path)
    dataset_root = _dataset_root(engine, dataset_id)
    root = Path(image_root).resolve() if image_root is not None else dataset_root
    parsed = read_coco(path, root if check_files else None, strict=strict, keep_scores=source == "predicted",
                       hash_files=check_files, display_name=display_name, decode=True,
                       decoded=_stored_files(engine, dataset_id, _relative_prefix(root, dataset_root)))
    report = ImportReport(dataset_id, path, source, findings=parsed.report)
    report.files_checked = len(parsed.images) if check_files else 0
    with_annotations = {ann.image_coco_id for ann in parsed.annotations}   # in the file, before any merge
    report.images_without_annotations = sum(1 for image in parsed.images if image.coco_id not in with_annotations)
    with write_session(engine) as session:
        updates = _match_by_name(session, dataset_id, parsed, report) if match_by_name else []
        _write(session, dataset_id, parsed, _relative_prefix(root, dataset_root), report, user, updates)
    _count_kinds(parsed, report)
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class _Update:
    """A file annotation that is a newer version of the stored annotation ``row_id``."""

    ann: ParsedAnnotation
    row_id: int


def _match_by_name(session: Session, dataset_id: int, parsed: ParsedCoco, report: ImportReport) -> list[_Update]:
    """Give the parsed file the dataset's ids: images by file name, categories by name; an id the
    dataset does not use keeps the file's number. Returns the stored annotations the file updates.

    An annotation the project has ever held on its image (the same mask and class: one it holds
    now, in any state, or any earlier version in the image's edit history) is not imported again,
    and the report says which stored annotation it is and what a person did to it. So uploading
    again a file the project was made from never brings back a version a person corrected,
    rejected or deleted (each would otherwise come back beside the person's work as accepted).

    A changed annotation is matched to the object it is a newer version of by its mask, never by
    its id (another tool may renumber): the decided object on the same image it overlaps most, at
    mask IoU >= 0.5 (:func:`_same_object`). Nobody touched that object in the studio: it is updated
    (one edit of the image with the import's additions, undone by the image's undo). A person
    changed, rejected or deleted it: the person's version is kept and a refusal names it. No match:
    a new annotation. A file that keeps the project's annotation ids (:func:`_follow_file_ids`)
    may also rename a category (it keeps the project's name, instead of splitting the class) and
    the annotations it leaves out are named.
    """
    known_images = {normal_file_name(name): coco_id for name, coco_id in session.execute(   # stored by an
        select(Image.file_name, Image.coco_id).where(Image.dataset_id == dataset_id))}       # earlier version
    known_categories = dict(session.execute(
        select(Category.name, Category.coco_id).where(Category.dataset_id == dataset_id)).all())
    image_map = _assign([(i.coco_id, i.file_name) for i in parsed.images], known_images)
    moved = [f"image '{i.file_name}' {i.coco_id} -> {image_map[i.coco_id]}" for i in parsed.images
             if image_map[i.coco_id] != i.coco_id]
    for image in parsed.images:
        image.coco_id = image_map[image.coco_id]
    parsed.incomplete_images = {image_map[i] for i in parsed.incomplete_images if i in image_map}
    for ann in parsed.annotations:
        ann.image_coco_id = image_map[ann.image_coco_id]
    held_now = _Holdings.read(session, dataset_id)
    stored = _follow_file_ids(held_now, parsed)
    renamed = _renamed_categories(parsed, known_categories, stored, report) if stored else {}
    category_map = _assign([(c.coco_id, renamed.get(c.coco_id, c.name)) for c in parsed.categories],
                           known_categories)
    moved = [f"category '{renamed.get(c.coco_id, c.name)}' {c.coco_id} -> {category_map[c.coco_id]}"
             for c in parsed.categories if category_map[c.coco_id] != c.coco_id] + moved
    if moved:
        report.merged.append(f"{len(moved)} ids of {parsed.report.file_name} are others in the project (the "
                             f"project's own for the same names, or taken): {', '.join(moved[:8])}"
                             f"{' ...' if len(moved) > 8 else ''}")
    for category in parsed.categories:
        category.name = renamed.get(category.coco_id, category.name)
        category.coco_id = category_map[category.coco_id]
    for ann in parsed.annotations:
        ann.category_id = category_map[ann.category_id]
    taken = session.scalar(select(func.max(Annotation.coco_id)).where(Annotation.dataset_id == dataset_id)) or 0
    held = _versions_held(held_now)
    touched, given = _person_touched_ids(held_now)
    fresh_from = max([taken + 1, *(a.coco_id + 1 for a in parsed.annotations), *(i + 1 for i in given)])
    objects = _objects_on_images(held_now, touched)
    claimed: set[int] = set()
    file_ids = {a.coco_id for a in parsed.annotations}
    kept, updates = [], []
    for ann in parsed.annotations:
        key = (ann.image_coco_id, ann.category_id, ann.rle_counts)
        where = f"annotations[{ann.index}] (id {ann.file_id!r}) in {parsed.report.file_name}"
        if key in held:  # e.g. the same file uploaded twice, or the file the project was made from
            parsed.report.add(where, f"{held[key]}: not imported again", "refused")
            continue
        held[key] = "the same mask and class are earlier in this file"
        same = _same_object(ann, objects.get(ann.image_coco_id, []), claimed)
        if same is not None and same.fate:
            parsed.report.add(where, f"the same object as annotation {same.coco_id} (mask IoU {same.iou:.2f}), "
                                     f"which {same.fate}: the person's version is kept", "refused")
            continue
        if same is not None:
            claimed.add(same.coco_id)
            updates.append(_Update(ann, same.id))
            continue
        if ann.coco_id in given:   # the file's id when the project never gave it (undo may bring a deleted one back)
            ann.coco_id, fresh_from = fresh_from, fresh_from + 1
        given.add(ann.coco_id)
        kept.append(ann)
    if stored:
        images = {i.coco_id for i in parsed.images}
        gone = [r for c, r in stored.items() if r.image_coco_id in images and c not in file_ids and c not in claimed]
        if gone:
            report.merged.append(f"{len(gone)} annotations of the project are not in {parsed.report.file_name} "
                                 f"(ids {', '.join(str(c) for c in sorted(r.coco_id for r in gone)[:10])}"
                                 f"{' ...' if len(gone) > 10 else ''}): kept")
    parsed.annotations = kept
    return updates


@dataclass
class _Stored:
    id: int
    coco_id: int
    image_coco_id: int
    category_id: int
    rle_counts: str


@dataclass
class _Holdings:
    """What a dataset holds, read once per import: its images (id -> coco id, height, width), its
    annotations and its images' edit history."""

    images: dict[int, tuple[int, int, int]]
    annotations: list[Any]
    edits: list[Any]

    @classmethod
    def read(cls, session: Session, dataset_id: int) -> "_Holdings":
        images = {r.id: (r.coco_id, r.height, r.width) for r in session.execute(
            select(Image.id, Image.coco_id, Image.height, Image.width).where(Image.dataset_id == dataset_id))}
        annotations = session.execute(select(Annotation.id, Annotation.coco_id, Annotation.image_id,
                                             Annotation.category_id, Annotation.rle_counts, Annotation.state)
                                      .where(Annotation.dataset_id == dataset_id)).all()
        edits = session.execute(select(Edit.image_id, Edit.action, Edit.status, Edit.payload)
                                .where(Edit.image_id.in_(list(images)))).all()
        return cls(images, annotations, edits)

    def coco_of(self, image_id: int) -> int:
        return self.images[image_id][0]


def _follow_file_ids(holdings: _Holdings, parsed: ParsedCoco) -> dict[int, _Stored]:
    """The project's annotations by id when the file keeps the project's annotation ids (at least
    half of the file's annotations whose id the project holds on the same image have the same
    mask), else ``{}`` (a file made elsewhere, whose ids mean nothing here). Call with the file's
    images already given the project's ids."""
    rows = {r.coco_id: _Stored(r.id, r.coco_id, holdings.coco_of(r.image_id), r.category_id, r.rle_counts)
            for r in holdings.annotations}
    same = present = 0
    for ann in parsed.annotations:
        row = rows.get(ann.coco_id)
        if row is None or row.image_coco_id != ann.image_coco_id:
            continue
        present += 1
        same += row.rle_counts == ann.rle_counts
    return rows if present and 2 * same >= present else {}


MACHINE_ACTIONS = ("replace_predictions", "import_coco")   # history entries no person made
SAME_OBJECT_IOU = 0.5


def _person_touched_ids(holdings: _Holdings) -> tuple[set[int], set[int]]:
    """(annotation ids a person's edit changed, every annotation id ever given: the table's and
    the history's). Prediction runs and applied imports are not a person's edits; an import a
    person undid is (the person said no to it)."""
    touched: set[int] = set()
    given = {r.coco_id for r in holdings.annotations}
    for _, action, status, payload in holdings.edits:
        by_person = action not in MACHINE_ACTIONS or (action == "import_coco" and status != "applied")
        for change in (payload or {}).get("annotations", []):
            for version in (change.get("before"), change.get("after")):
                if version and version.get("coco_id") is not None:
                    given.add(version["coco_id"])
                    if by_person:
                        touched.add(version["coco_id"])
    return touched, given


@dataclass
class _Object:
    """An object the project holds or a person deleted, on one image: what a file's annotation may
    be a newer version of. ``fate``: what a person did to it ("" for nobody)."""

    id: int | None
    coco_id: int
    rle: dict[str, Any]
    fate: str
    iou: float = 0.0


def _objects_on_images(holdings: _Holdings, touched: set[int]) -> dict[int, list[_Object]]:
    """Image coco id -> the decided objects on it: accepted and rejected annotations (proposals are
    the model's, not anyone's work) and the annotations a person deleted (their last version)."""
    sizes = holdings.images
    out: dict[int, list[_Object]] = {}
    current: set[int] = set()
    for row in holdings.annotations:
        current.add(row.coco_id)
        if row.state == "proposed":
            continue
        coco_id, h, w = sizes[row.image_id]
        fate = ("a person rejected" if row.state == "rejected" else
                "a person changed in the studio" if row.coco_id in touched else "")
        out.setdefault(coco_id, []).append(_Object(row.id, row.coco_id, {"size": [h, w], "counts": row.rle_counts}, fate))
    for image_id, action, _, payload in holdings.edits:
        if action in MACHINE_ACTIONS:
            continue
        coco_id, h, w = sizes[image_id]
        for change in (payload or {}).get("annotations", []):
            before = change.get("before")
            if before and change.get("after") is None and before.get("coco_id") not in current \
                    and before.get("state") != "proposed" and "rle_counts" in before:
                out.setdefault(coco_id, []).append(_Object(None, before["coco_id"], {"size": [h, w],
                                                           "counts": before["rle_counts"]}, "a person deleted"))
    return out


def _same_object(ann: ParsedAnnotation, objects: list[_Object], claimed: set[int]) -> _Object | None:
    """The object ``ann`` is a newer version of: the one its mask overlaps most, at mask IoU >=
    ``SAME_OBJECT_IOU`` (pycocotools' IoU on the RLEs), not already matched to another annotation
    of the file. Ids are not used: another tool may renumber them."""
    from pycocotools import mask as mask_utils
    free = [o for o in objects if o.coco_id not in claimed]
    if not free:
        return None
    size = free[0].rle["size"]
    ious = mask_utils.iou([{"size": size, "counts": ann.rle_counts}], [o.rle for o in free], [0] * len(free))[0]
    best = max(range(len(free)), key=lambda k: ious[k])
    if ious[best] < SAME_OBJECT_IOU:
        return None
    free[best].iou = float(ious[best])
    return free[best]


def _renamed_categories(parsed: ParsedCoco, known: dict[str, int], stored: dict[int, _Stored],
                        report: ImportReport) -> dict[int, str]:
    """File category id -> the project's name, for a category the file (one that keeps the
    project's annotation ids) renamed: its name is new to the project, the project has a category
    with its id whose name is no longer in the file, and one of its annotations is in the file
    under the same id, on the same image, with the same mask (so the id means the same class).
    Its annotations keep the project's class (a line in ``report.merged`` says so)."""
    names_by_id = {coco_id: name for name, coco_id in known.items()}
    in_file = {c.name for c in parsed.categories}
    evidence = {ann.category_id for ann in parsed.annotations
                if (row := stored.get(ann.coco_id)) is not None and row.image_coco_id == ann.image_coco_id
                and row.rle_counts == ann.rle_counts and row.category_id == ann.category_id}
    renamed: dict[int, str] = {}
    for category in parsed.categories:
        old = names_by_id.get(category.coco_id)
        if category.name in known or old is None or old in in_file or category.coco_id not in evidence:
            continue
        renamed[category.coco_id] = old
        report.merged.append(f"category {category.coco_id} is '{category.name}' in {parsed.report.file_name} "
                             f"and '{old}' in the project: its annotations are '{old}' (the project keeps "
                             f"its name)")
    return renamed


def _versions_held(holdings: _Holdings) -> dict[tuple[int, int, str], str]:
    """``(image coco id, category id, RLE counts)`` of every annotation version the dataset holds or
    held -> what became of it, in words (current rows in any state, then every ``before``/``after``
    row in the images' edit histories)."""
    coco_of = holdings.coco_of
    held: dict[tuple[int, int, str], str] = {}
    current: dict[int, str] = {}
    for row in holdings.annotations:
        current[row.coco_id] = row.state
        state = "" if row.state == "accepted" else f", {row.state}"
        held[(coco_of(row.image_id), row.category_id, row.rle_counts)] = (
            f"the same mask and class are already on this image (annotation {row.coco_id}{state})")
    for image_id, action, status, payload in holdings.edits:
        if action == "import_coco" and status == "applied":   # a file's versions are the file's; an undone
            continue                                          # import is a person's "no" to them
        for change in (payload or {}).get("annotations", []):
            for version in (change.get("before"), change.get("after")):
                if not version or "rle_counts" not in version:
                    continue
                key = (coco_of(image_id), version.get("category_id"), version["rle_counts"])
                coco_id = version.get("coco_id")
                fate = ("deleted by a person" if coco_id not in current else
                        "rejected by a person" if current[coco_id] == "rejected" else "since edited by a person")
                held.setdefault(key, f"this image's annotation {coco_id} had this mask and class and was {fate}")
    return held


def _assign(items: list[tuple[int, str]], known: dict[str, int]) -> dict[int, int]:
    """file id -> dataset id: the dataset's id for a known name; else the file's own id when the
    dataset does not use it, else a fresh id above all used."""
    used = set(known.values())
    mapping: dict[int, int] = {}
    new = [(old, key) for old, key in items if key not in known]
    for old, key in items:
        if key in known:
            mapping[old] = known[key]
    for old, _ in new:
        if old not in used:
            mapping[old] = old
            used.add(old)
    next_id = max(used, default=0) + 1
    for old, _ in new:
        if old in mapping:
            continue
        while next_id in used:
            next_id += 1
        mapping[old] = next_id
        used.add(next_id)
    return mapping


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


def _stored_files(engine: Engine, dataset_id: int, prefix: str) -> frozenset[str]:
    """File names (relative to the import's image root) of the images the dataset holds: each was
    decoded when it came in, so the import reads their header only."""
    with read_session(engine) as session:
        paths = session.scalars(select(Image.rel_path).where(Image.dataset_id == dataset_id))
        return frozenset(p[len(prefix):] for p in paths if p.startswith(prefix))


def _count_kinds(parsed: ParsedCoco, report: ImportReport) -> None:
    """Count what was written: annotations a merge refused are not among them."""
    def count(kind: str) -> int:
        return sum(1 for ann in parsed.annotations if ann.kind == kind)
    report.polygons, report.rle_compressed = count("polygon"), count("rle")
    report.rle_uncompressed = count("rle_uncompressed")
    report.crowd = sum(1 for ann in parsed.annotations if ann.iscrowd)
    report.annotations_added = len(parsed.annotations)


def _write(
    session: Session, dataset_id: int, parsed: ParsedCoco, prefix: str, report: ImportReport,
    user: str, updates: list[_Update] | None = None,
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
    _record_in_history(session, dataset.id, parsed, existing_images, image_ids, updates or [], report, user)
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
        normal_file_name(row.file_name): row     # names an earlier version stored as the file spelled them
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
        extra = dict(image.extra or {})
        state = extra.pop("review_state", None)     # written by our export (coco_export)
        state = state if state in REVIEW_STATES else "unreviewed"
        if state == "reviewed" and image.coco_id in parsed.incomplete_images:
            state = "in_progress"    # "reviewed" says every object is there; one was refused
            report.reopened.append(f"'{image.file_name}' is reviewed in the file, but annotations of it were "
                                   f"refused (see below): in progress (review it again)")
        report.images_reviewed += state == "reviewed"
        rows.append(dict(
            dataset_id=dataset.id, coco_id=image.coco_id, file_name=image.file_name,
            rel_path=prefix + image.file_name, width=image.width, height=image.height,
            content_hash=image.content_hash, review_state=state, revision=0,
            extra=extra or None,
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
    for ann in parsed.annotations:
        if ann.coco_id in taken:
            raise CocoFormatError(
                f"annotations[{ann.index}] (id {ann.file_id!r}) in {parsed.report.file_name}: annotation "
                f"id {ann.coco_id} already exists in dataset '{dataset.name}' (the studio's upload "
                f"gives fresh ids)"
            )


def _record_in_history(
    session: Session, dataset_id: int, parsed: ParsedCoco, existing: set[int], image_ids: dict[int, int],
    updates: list[_Update], report: ImportReport, user: str,
) -> None:
    """What the import changed on images the dataset already had, as one edit per image in its
    history: the annotations it added and the stored ones it updated (so the image's undo takes
    the import back, not a person's earlier edit). The image moves to a new revision; a reviewed
    one goes back to *in progress* (what the person reviewed has changed), named in
    ``report.reopened``."""
    added: dict[int, list[int]] = {}
    for ann in parsed.annotations:
        if ann.image_coco_id in existing:
            added.setdefault(image_ids[ann.image_coco_id], []).append(ann.coco_id)
    rows = {}
    wanted = [c for ids in added.values() for c in ids]
    for start in range(0, len(wanted), _CHUNK):
        for row in session.scalars(select(Annotation).where(Annotation.dataset_id == dataset_id,
                                                            Annotation.coco_id.in_(wanted[start:start + _CHUNK]))):
            rows[row.coco_id] = row
    changed: dict[int, list[tuple[Annotation, ParsedAnnotation]]] = {}
    for update in updates:
        row = session.get(Annotation, update.row_id)
        changed.setdefault(row.image_id, []).append((row, update.ann))
    for image_id in sorted(set(added) | set(changed)):
        image = session.get(Image, image_id)
        image.revision += 1
        log = ChangeLog()
        for coco_id in added.get(image_id, []):
            log.changed(rows[coco_id].id, None, history.snapshot(rows[coco_id]))
        for row, ann in changed.get(image_id, []):
            before = history.snapshot(row)
            row.category_id, row.rle_counts, row.area = ann.category_id, ann.rle_counts, ann.area
            row.bbox_x, row.bbox_y, row.bbox_w, row.bbox_h = ann.bbox
            row.iscrowd = ann.iscrowd
            log.changed(row.id, before, history.snapshot(row))
            what = "mask" if before["category_id"] == ann.category_id else (
                "class" if before["rle_counts"] == ann.rle_counts else "mask and class")
            report.merged.append(f"annotation {row.coco_id} on '{image.file_name}': {what} updated from "
                                 f"{report.file_name} (no person had changed it; undo on the image takes it back)")
        n_added, n_changed = len(added.get(image_id, [])), len(changed.get(image_id, []))
        report.annotations_updated += n_changed
        what = " and ".join(part for part in (f"got {n_added} annotations" if n_added else "",
                                              f"{n_changed} of its annotations changed" if n_changed else "") if part)
        if image.review_state == "reviewed":
            image.review_state = "in_progress"
            log.review_state = ("reviewed", "in_progress")
            report.reopened.append(f"'{image.file_name}' was reviewed and {what} from the file: back to in "
                                   f"progress (review it again)")
        summary = f"import_coco: {what} from {report.file_name}"
        image.updated_at, image.updated_by, image.last_action = utc_now(), user, summary
        history.record(session, image, user, "import_coco", summary, log)


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
