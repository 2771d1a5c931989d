"""The machinery every edit of an image goes through: lock, check revision, record history.

An edit runs in one write transaction that starts by moving the image to its next revision::

    UPDATE images SET revision = revision + 1, ... WHERE id = :id [AND revision = :expected]

That statement is the optimistic lock: when the caller passes the revision it based its edit on and
someone else has moved the image on since, no row matches and the edit fails with a
:class:`ConflictError` that says who changed what. It also serialises concurrent edits of one image
(a row lock on PostgreSQL, the write lock on SQLite), so an edit without an expected revision is
never lost either: it applies on top of the other one.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from sqlalchemy import Engine, case, func, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from annotations import history, rle
from annotations.database import write_session
from annotations.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    UndecidedProposalsError,
)
from annotations.history import ChangeLog
from annotations.records import EditRecord
from annotations.schema import Annotation, Category, Dataset, Image, utc_now


NO_OBJECT_LEFT = "no accepted object is left, so the image is no longer reviewed"


@dataclass
class ImageEdit:
    """An edit in progress: the session, the locked image (already at its new revision), the log.

    Set ``summary`` to describe the edit once it is known (it becomes the image's ``last_action``
    and the history entry's summary).
    """

    session: Session
    image: Image
    log: ChangeLog
    summary: str


@contextmanager
def edit_image(
    engine: Engine,
    image_id: int,
    *,
    action: str,
    summary: str,
    expected_revision: int | None,
    user: str,
) -> Iterator[ImageEdit]:
    """Run an edit of one image in a transaction and record it in the image's history.

    "Reviewed, no objects" is a statement the person makes (``set_review_state``), never a side
    effect: an edit that takes the last accepted object from a reviewed image also sets it back to
    "in_progress", in the same edit (one undo step), and says so in its summary.
    """
    with write_session(engine) as session:
        image = lock_image(session, image_id, expected_revision, user, summary)
        edit = ImageEdit(session, image, ChangeLog(), summary)
        had_objects = image.review_state == "reviewed" and accepted_count(session, image_id) > 0
        yield edit
        if had_objects and image.review_state == "reviewed" and accepted_count(session, image_id) == 0:
            edit.log.review_state = ("reviewed", "in_progress")
            image.review_state = "in_progress"
            edit.summary += "; " + NO_OBJECT_LEFT
        image.last_action = edit.summary
        history.record(session, image, user, action, edit.summary, edit.log)


def accepted_count(session: Session, image_id: int) -> int:
    """How many accepted annotations the image holds (as the session sees them now)."""
    session.flush()
    return int(session.scalar(select(func.count()).select_from(Annotation).where(
        Annotation.image_id == image_id, Annotation.state == "accepted")) or 0)


def image_of_annotation(session: Session, ann_id: int) -> int:
    """The image an annotation belongs to (raises :class:`NotFoundError`)."""
    image_id = session.scalar(select(Annotation.image_id).where(Annotation.id == ann_id))
    if image_id is None:
        raise NotFoundError(f"annotation {ann_id} does not exist")
    return image_id


def lock_image(
    session: Session, image_id: int, expected_revision: int | None, user: str, attempted: str
) -> Image:
    """Move the image to its next revision (row lock), checking ``expected_revision`` if given.

    Raises:
        NotFoundError: no such image.
        ConflictError: ``expected_revision`` is stale.
    """
    statement = (
        update(Image)
        .where(Image.id == image_id)
        .values(revision=Image.revision + 1, updated_at=utc_now(), updated_by=user)
        .execution_options(synchronize_session=False)
    )
    if expected_revision is not None:
        statement = statement.where(Image.revision == expected_revision)
    if session.execute(statement).rowcount != 1:
        _raise_stale(session, image_id, expected_revision, attempted)
    image = session.get(Image, image_id, populate_existing=True)
    assert image is not None
    return image


def _raise_stale(
    session: Session, image_id: int, expected_revision: int | None, attempted: str
) -> None:
    image = session.get(Image, image_id, populate_existing=True)
    if image is None:
        raise NotFoundError(f"image {image_id} does not exist")
    raise ConflictError(
        image_id=image_id,
        file_name=image.file_name,
        expected_revision=int(expected_revision or 0),
        actual_revision=image.revision,
        changed_by=image.updated_by,
        last_action=image.last_action,
        attempted=attempted,
    )


def locked_annotation(session: Session, ann_id: int) -> Annotation:
    """Load an annotation after its image was locked (so it is current)."""
    ann = session.get(Annotation, ann_id, populate_existing=True)
    if ann is None:
        raise NotFoundError(f"annotation {ann_id} does not exist")
    return ann


def require_category(session: Session, dataset_id: int, category_id: int) -> None:
    """Raise :class:`NotFoundError` unless ``category_id`` (a COCO id) is in the dataset."""
    found = session.scalar(
        select(Category.id).where(
            Category.dataset_id == dataset_id, Category.coco_id == int(category_id)
        )
    )
    if found is None:
        raise NotFoundError(f"category id {category_id} is not a category of dataset {dataset_id}")


def require_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    """Raise :class:`InvalidInputError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(f"{what} must be one of {', '.join(choices)}; got {value!r}")
    return value


def allocate_ids(
    session: Session, dataset_id: int, counter: InstrumentedAttribute[int], count: int
) -> int:
    """Reserve ``count`` consecutive COCO ids from a dataset counter; returns the first."""
    next_value = session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values({counter: counter + count})
        .returning(counter)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    return next_value - count


def reserve_id(
    session: Session, dataset_id: int, counter: InstrumentedAttribute[int], used: int
) -> None:
    """Move a dataset counter past an explicitly chosen id."""
    session.execute(
        update(Dataset)
        .where(Dataset.id == dataset_id)
        .values({counter: case((counter > used, counter), else_=used + 1)})
        .execution_options(synchronize_session=False)
    )


@dataclass
class NewAnnotation:
    """An annotation to insert on the edited image (``category_id`` is a COCO id)."""

    counts: str
    category_id: int
    source: str
    state: str
    score: float | None = None
    model_version: str | None = None
    extra: dict[str, Any] | None = None


def insert_annotations(edit: ImageEdit, new: list[NewAnnotation]) -> list[Annotation]:
    """Insert annotations on the edited image with fresh COCO ids, in one flush, and log them."""
    if not new:
        return []
    image = edit.image
    first = allocate_ids(edit.session, image.dataset_id, Dataset.next_annotation_id, len(new))
    now = utc_now()
    rows = []
    for offset, item in enumerate(new):
        area, (x, y, w, h) = rle.area_and_bbox(item.counts, image.height, image.width)
        rows.append(Annotation(
            dataset_id=image.dataset_id, image_id=image.id, coco_id=first + offset,
            category_id=int(item.category_id), rle_counts=item.counts, area=area,
            bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h, iscrowd=False, source=item.source,
            state=item.state, score=None if item.score is None else float(item.score),
            model_version=item.model_version, extra=item.extra, created_at=now,
        ))
    edit.session.add_all(rows)
    edit.session.flush()
    for ann in rows:
        edit.log.changed(ann.id, None, history.snapshot(ann))
    return rows


def refuse_proposals_if_reviewed(image: Image, state: str) -> None:
    """A reviewed image holds no undecided proposal: refuse to make one."""
    if state == "proposed" and image.review_state == "reviewed":
        raise InvalidInputError(
            f"image {image.id} '{image.file_name}' is reviewed: reopen it before making an "
            f"annotation a proposal again")


def decide_proposals(edit: ImageEdit, undecided: str, min_score: float) -> dict[str, int]:
    """Decide the edited image's proposals before it is marked reviewed (and log it).

    ``undecided``: ``"refuse"`` raises :class:`UndecidedProposalsError` when there are any,
    ``"accept"`` accepts those scoring at least ``min_score`` and rejects the rest, ``"reject"``
    rejects them all. Returns ``{"accepted": n, "rejected": m}``.
    """
    proposals = list(edit.session.scalars(
        select(Annotation).where(
            Annotation.image_id == edit.image.id, Annotation.state == "proposed"
        ).order_by(Annotation.id)
    ))
    counts = {"accepted": 0, "rejected": 0}
    if proposals and undecided == "refuse":
        raise UndecidedProposalsError(edit.image.id, edit.image.file_name,
                                      [ann.id for ann in proposals])
    for ann in proposals:
        keep = undecided == "accept" and (ann.score if ann.score is not None else 1.0) >= min_score
        before = history.snapshot(ann)
        ann.state = "accepted" if keep else "rejected"
        counts[ann.state] += 1
        edit.log.changed(ann.id, before, history.snapshot(ann))
    return counts


def set_mask(ann: Annotation, counts: str, height: int, width: int) -> None:
    """Replace an annotation's mask and recompute its area and bbox."""
    area, (x, y, w, h) = rle.area_and_bbox(counts, height, width)
    ann.rle_counts, ann.area = counts, area
    ann.bbox_x, ann.bbox_y, ann.bbox_w, ann.bbox_h = x, y, w, h


def adopt(ann: Annotation) -> None:
    """A person edited a still-proposed prediction: it becomes their (accepted) annotation.

    This keeps the work from being replaced by the next prediction run; the score and model
    version stay as a record of where it came from.
    """
    if ann.source == "predicted" and ann.state == "proposed":
        ann.source, ann.state = "human", "accepted"


def claim(ann: Annotation) -> None:
    """A person relabelled a machine proposal: it becomes theirs (``source="human"``) so the next
    prediction run keeps it, and stays undecided (relabelling never accepts)."""
    if ann.source == "predicted" and ann.state == "proposed":
        ann.source = "human"


def claim_id(
    session: Session, dataset_id: int, counter: InstrumentedAttribute[int], table: Any,
    coco_id: int | None,
) -> int:
    """Next free COCO id from ``counter``, or check an explicit one and move the counter past it."""
    if coco_id is None:
        return allocate_ids(session, dataset_id, counter, 1)
    used = session.scalar(
        select(table.id).where(table.dataset_id == dataset_id, table.coco_id == coco_id)
    )
    if used is not None:
        raise InvalidInputError(
            f"{table.__tablename__} id {coco_id} is already used in dataset {dataset_id}"
        )
    reserve_id(session, dataset_id, counter, coco_id)
    return int(coco_id)


class _NothingToDo(Exception):
    """Rolls back an undo/redo transaction when the history has nothing to step to."""


def step_history(
    engine: Engine, image_id: int, direction: str, expected_revision: int | None, user: str
) -> EditRecord | None:
    """Undo (``direction="undo"``) or redo one edit of the image; returns that edit, or None if
    there is none."""
    try:
        with write_session(engine) as session:
            image = lock_image(session, image_id, expected_revision, user, direction)
            if direction == "undo":
                edit = history.last_applied(session, image_id)
                step = history.revert
            else:
                edit = history.first_undone(session, image_id)
                step = history.reapply
            if edit is None:
                raise _NothingToDo
            step(session, image, edit)
            image.last_action = f"{direction} of '{edit.summary}'"
            session.flush()
            record = EditRecord.from_row(edit)
    except _NothingToDo:
        return None
    return record
