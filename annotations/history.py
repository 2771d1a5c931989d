"""Per-image edit history: what every edit changed, and undo/redo by replaying snapshots.

An edit records, for each annotation it touched, the full row before and after (``None`` where the
annotation did not exist), and the image's review state before and after if it changed. Undo writes
the ``before`` rows back, redo the ``after`` rows. Because every change to an image's annotations
goes through the history (imports aside, which only add rows; a merge that updates stored
annotations from a file records its changes as an edit), the newest applied edit always
matches the current state, so replaying its snapshots is exact.

History is a stack per image: undo takes the newest ``applied`` edit, redo the oldest ``undone``
one, and a new edit turns the ``undone`` entries into ``discarded`` (the redo branch is gone, the
record stays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from annotations.schema import Annotation, Edit, Image, utc_now

SNAPSHOT_COLUMNS = tuple(c.key for c in Annotation.__table__.columns if c.key != "created_at")


def snapshot(ann: Annotation) -> dict[str, Any]:
    """The annotation row as a JSON-safe dict (everything but ``created_at``)."""
    return {key: getattr(ann, key) for key in SNAPSHOT_COLUMNS}


@dataclass
class ChangeLog:
    """What one edit changed; filled in by the store while it edits."""

    annotations: list[dict[str, Any]] = field(default_factory=list)
    review_state: tuple[str, str] | None = None

    def changed(self, ann_id: int, before: dict | None, after: dict | None) -> None:
        """Record that annotation ``ann_id`` went from ``before`` to ``after``."""
        self.annotations.append({"id": ann_id, "before": before, "after": after})

    def payload(self) -> dict[str, Any]:
        """The JSON payload stored in the ``edits`` row."""
        image = {"review_state": list(self.review_state)} if self.review_state else {}
        return {"annotations": self.annotations, "image": image}


def record(
    session: Session, image: Image, user: str, action: str, summary: str, log: ChangeLog
) -> Edit:
    """Append an edit to the image's history (dropping the redo branch) and return it."""
    session.execute(
        update(Edit)
        .where(Edit.image_id == image.id, Edit.status == "undone")
        .values(status="discarded")
    )
    edit = Edit(
        image_id=image.id,
        revision=image.revision,
        user=user,
        action=action,
        summary=summary,
        payload=log.payload(),
        status="applied",
        created_at=utc_now(),
    )
    session.add(edit)
    session.flush()
    return edit


def mentions_category(session: Session, dataset_id: int, coco_id: int) -> bool:
    """Whether any edit of the dataset's images holds an annotation of category ``coco_id``
    before or after it (undo or redo could bring that annotation back). Reads every edit of the
    dataset: for rare checks only."""
    images = select(Image.id).where(Image.dataset_id == dataset_id)
    for payload in session.scalars(select(Edit.payload).where(Edit.image_id.in_(images))):
        for change in payload.get("annotations", []):
            if any(row is not None and row.get("category_id") == coco_id
                   for row in (change.get("before"), change.get("after"))):
                return True
    return False


def last_applied(session: Session, image_id: int) -> Edit | None:
    """The edit an undo would revert."""
    return session.scalars(
        select(Edit)
        .where(Edit.image_id == image_id, Edit.status == "applied")
        .order_by(Edit.id.desc())
        .limit(1)
    ).first()


def first_undone(session: Session, image_id: int) -> Edit | None:
    """The edit a redo would re-apply."""
    return session.scalars(
        select(Edit)
        .where(Edit.image_id == image_id, Edit.status == "undone")
        .order_by(Edit.id)
        .limit(1)
    ).first()


def revert(session: Session, image: Image, edit: Edit) -> None:
    """Undo ``edit``: write back every ``before`` snapshot, newest change first."""
    payload = edit.payload
    for change in reversed(payload["annotations"]):
        _restore(session, change["id"], change["before"])
    review = payload.get("image", {}).get("review_state")
    if review:
        image.review_state = review[0]
    edit.status = "undone"


def reapply(session: Session, image: Image, edit: Edit) -> None:
    """Redo ``edit``: write back every ``after`` snapshot, in the original order."""
    payload = edit.payload
    for change in payload["annotations"]:
        _restore(session, change["id"], change["after"])
    review = payload.get("image", {}).get("review_state")
    if review:
        image.review_state = review[1]
    edit.status = "applied"


def _restore(session: Session, ann_id: int, row: dict[str, Any] | None) -> None:
    """Make annotation ``ann_id`` equal to ``row`` (delete it when ``row`` is None)."""
    if row is None:
        session.execute(delete(Annotation).where(Annotation.id == ann_id))
        return
    values = {key: row[key] for key in SNAPSHOT_COLUMNS if key != "id"}
    exists = session.scalar(select(Annotation.id).where(Annotation.id == ann_id))
    if exists is not None:
        session.execute(update(Annotation).where(Annotation.id == ann_id).values(**values))
    else:
        session.execute(insert(Annotation).values(id=ann_id, created_at=utc_now(), **values))
