"""A dataset's classes as a person manages them: made by labelling with a new name (inside that
edit, so its undo removes the class again), renamed, merged into another class, removed when unused.

A class name is matched without regard to case or repeated spaces ("Circle " is the class
"circle"); two classes of one dataset never share a name that way once made here.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from annotations import history
from annotations.editing import ImageEdit, claim_id, lock_image
from annotations.errors import InvalidInputError, NotFoundError
from annotations.schema import Annotation, Category, Dataset


def clean_name(name: str) -> str:
    """A class name as stored: surrounding and repeated white space dropped.

    Raises InvalidInputError: an empty name."""
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise InvalidInputError("a class needs a name")
    return cleaned


def find_by_name(session: Session, dataset_id: int, name: str) -> Category | None:
    """The dataset's category called ``name`` (case and spacing aside), or None."""
    wanted = clean_name(name).casefold()
    for row in session.scalars(select(Category).where(Category.dataset_id == dataset_id).order_by(Category.coco_id)):
        if " ".join(row.name.split()).casefold() == wanted:
            return row
    return None


def category_in_edit(edit: ImageEdit, category: int | str) -> int:
    """The COCO id an edit labels with: ``category`` itself (an int), or the class called
    ``category`` (a str), made in this edit when the dataset has none of that name (and recorded
    in the edit, so that its undo removes it again and its redo makes it again).

    Raises NotFoundError: an int that is no category of the dataset."""
    dataset_id = edit.image.dataset_id
    if isinstance(category, str):
        row = find_by_name(edit.session, dataset_id, category)
        if row is not None:
            return row.coco_id
        name = clean_name(category)
        coco_id = claim_id(edit.session, dataset_id, Dataset.next_category_id, Category, None)
        edit.session.add(Category(dataset_id=dataset_id, coco_id=coco_id, name=name, extra=dict(history.MADE)))
        edit.session.flush()
        edit.log.category("made", coco_id, name)
        return coco_id
    found = edit.session.scalar(select(Category.id).where(
        Category.dataset_id == dataset_id, Category.coco_id == int(category)))
    if found is None:
        raise NotFoundError(f"category id {category} is not a category of dataset {dataset_id}")
    return int(category)


def required(session: Session, dataset_id: int, coco_id: int) -> Category:
    """The dataset's category ``coco_id``; NotFoundError naming it otherwise."""
    row = session.scalar(select(Category).where(Category.dataset_id == dataset_id, Category.coco_id == coco_id))
    if row is None:
        raise NotFoundError(f"dataset {dataset_id} has no category {coco_id}")
    return row


def usage(session: Session, dataset_id: int) -> dict[int, int]:
    """COCO category id -> how many annotations (any state) carry it; categories without any: 0."""
    counts = dict(session.execute(
        select(Annotation.category_id, func.count()).where(Annotation.dataset_id == dataset_id)
        .group_by(Annotation.category_id)).all())
    return {row.coco_id: int(counts.get(row.coco_id, 0))
            for row in session.scalars(select(Category).where(Category.dataset_id == dataset_id))}


def rename(session: Session, dataset_id: int, coco_id: int, name: str) -> str:
    """Give category ``coco_id`` another name; returns the old one.

    Raises InvalidInputError: an empty name, or one another class has (merge into it instead)."""
    row = required(session, dataset_id, coco_id)
    name = clean_name(name)
    other = find_by_name(session, dataset_id, name)
    if other is not None and other.coco_id != coco_id:
        raise InvalidInputError(f"there is a class called {other.name!r} already: merge {row.name!r} into it instead")
    old, row.name = row.name, name
    return old


def merge(session: Session, dataset_id: int, source: int, target: int, user: str) -> dict[int, list[int]]:
    """Merge category ``source`` into ``target``: every annotation of ``source`` gets ``target``,
    recorded as one edit per image (its undo gives that image's annotations ``source`` back, the
    class made again), and ``source`` is removed (:func:`history.remove_category`: an older
    edit's undo that brings back an annotation of it makes it again).
    Returns image id -> the annotation ids that changed class.

    Raises NotFoundError (either class unknown), InvalidInputError (the same class twice)."""
    src, dst = required(session, dataset_id, source), required(session, dataset_id, target)
    if source == target:
        raise InvalidInputError(f"{src.name!r} cannot be merged into itself")
    summary = f"merge class {src.name!r} into {dst.name!r}"
    rows = list(session.scalars(select(Annotation).where(
        Annotation.dataset_id == dataset_id, Annotation.category_id == source).order_by(Annotation.id)))
    changed: dict[int, list[int]] = {}
    for ann in rows:
        changed.setdefault(ann.image_id, []).append(ann.id)
    for image_id, ids in sorted(changed.items()):
        image = lock_image(session, image_id, None, user, summary)
        log = history.ChangeLog()
        for ann in (a for a in rows if a.image_id == image_id):
            before = history.snapshot(ann)
            ann.category_id = target
            log.changed(ann.id, before, history.snapshot(ann))
        log.category("removed", source, src.name)
        text = f"{summary}: " + ", ".join(f"#{i}" for i in ids)
        image.last_action = text
        history.record(session, image, user, "merge_categories", text, log)
    history.remove_category(session, dataset_id, src)
    return changed


def remove_unused(session: Session, dataset_id: int, coco_id: int) -> str:
    """Remove a category no annotation carries; returns its name. Edits whose rows name it
    (an undo or redo could bring such an annotation back) record it as "needed", so that
    stepping through them makes the class again (same id and name) while it is carried.

    Raises NotFoundError (unknown), InvalidInputError naming what carries it."""
    row = required(session, dataset_id, coco_id)
    used = session.scalar(select(func.count()).select_from(Annotation).where(
        Annotation.dataset_id == dataset_id, Annotation.category_id == coco_id)) or 0
    if used:
        raise InvalidInputError(f"class {row.name!r} is in use: {used} annotation{'s' if used != 1 else ''} "
                                f"(rejected ones included) carry it; merge it into another class instead")
    name = row.name
    history.remove_category(session, dataset_id, row)
    return name
