"""Per-image edit history: what every edit changed, and undo/redo by replaying snapshots.

An edit records, for each annotation it touched, the full row before and after (``None`` where the
annotation did not exist), and the image's review state before and after if it changed. Undo writes
the ``before`` rows back, redo the ``after`` rows. An edit that made a class (a person labelled with
a new name) or merged one away records that too (``categories``): undo removes the class it made
when nothing carries it any more, and brings back the one it merged away; redo the reverse.
Because every change to an image's annotations
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

from annotations.schema import Annotation, Category, Edit, Image, utc_now

SNAPSHOT_COLUMNS = tuple(c.key for c in Annotation.__table__.columns if c.key != "created_at")


def snapshot(ann: Annotation) -> dict[str, Any]:
    """The annotation row as a JSON-safe dict (everything but ``created_at``)."""
    return {key: getattr(ann, key) for key in SNAPSHOT_COLUMNS}


@dataclass
class ChangeLog:
    """What one edit changed; filled in by the store while it edits."""

    annotations: list[dict[str, Any]] = field(default_factory=list)
    review_state: tuple[str, str] | None = None
    categories: list[dict[str, Any]] = field(default_factory=list)

    def changed(self, ann_id: int, before: dict | None, after: dict | None) -> None:
        """Record that annotation ``ann_id`` went from ``before`` to ``after``."""
        self.annotations.append({"id": ann_id, "before": before, "after": after})

    def category(self, change: str, coco_id: int, name: str) -> None:
        """Record that the edit ``"made"`` or ``"removed"`` the category ``coco_id`` called ``name``
        (or ``"needed"``: its rows name it, and it was removed since)."""
        self.categories.append({"change": change, "coco_id": int(coco_id), "name": name})

    def payload(self) -> dict[str, Any]:
        """The JSON payload stored in the ``edits`` row."""
        image = {"review_state": list(self.review_state)} if self.review_state else {}
        out: dict[str, Any] = {"annotations": self.annotations, "image": image}
        if self.categories:
            out["categories"] = self.categories
        return out


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


def records_category(payload: dict[str, Any], coco_id: int) -> bool:
    """Whether an edit records category ``coco_id`` (made, removed or needed: its undo and redo
    put the category back when they need it)."""
    return any(item["coco_id"] == coco_id for item in payload.get("categories", []))


def mentions_category(session: Session, dataset_id: int, coco_id: int) -> bool:
    """Whether any edit of the dataset's images holds an annotation of category ``coco_id``
    before or after it, so that undo or redo could bring that annotation back without the
    category (edits that made or removed it themselves put it back: not counted). Reads every
    edit of the dataset: for rare checks only."""
    images = select(Image.id).where(Image.dataset_id == dataset_id)
    for payload in session.scalars(select(Edit.payload).where(Edit.image_id.in_(images))):
        if records_category(payload, coco_id):
            continue
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
    _categories(session, image, edit, ("removed", "needed"), "made")
    for change in reversed(payload["annotations"]):
        _restore(session, change["id"], change["before"])
    _categories(session, image, edit, ("made", "needed"), "removed")
    review = payload.get("image", {}).get("review_state")
    if review:
        image.review_state = review[0]
    edit.status = "undone"


def reapply(session: Session, image: Image, edit: Edit) -> None:
    """Redo ``edit``: write back every ``after`` snapshot, in the original order."""
    payload = edit.payload
    _categories(session, image, edit, ("made", "needed"), "made")
    for change in payload["annotations"]:
        _restore(session, change["id"], change["after"])
    _categories(session, image, edit, ("removed", "needed"), "removed")
    review = payload.get("image", {}).get("review_state")
    if review:
        image.review_state = review[1]
    edit.status = "applied"


def _categories(session: Session, image: Image, edit: Edit, changes: tuple[str, ...], then: str) -> None:
    """Replay the edit's category records of the kinds ``changes`` ("made", "removed", or
    "needed": a class removed later that this edit's rows name): ``then="made"`` puts each such
    category back (same COCO id and name) unless it is there, ``then="removed"`` removes it
    unless an annotation carries it or another edit could bring one back (it stays then)."""
    for item in edit.payload.get("categories", []):
        if item["change"] not in changes:
            continue
        row = session.scalar(select(Category).where(
            Category.dataset_id == image.dataset_id, Category.coco_id == item["coco_id"]))
        if then == "made" and row is None:
            session.add(Category(dataset_id=image.dataset_id, coco_id=item["coco_id"], name=item["name"]))
            session.flush()
        elif then == "removed" and row is not None:
            session.flush()
            carried = session.scalar(select(Annotation.id).where(
                Annotation.dataset_id == image.dataset_id, Annotation.category_id == item["coco_id"]).limit(1))
            if carried is None and not mentions_category(session, image.dataset_id, item["coco_id"]):
                session.delete(row)
                session.flush()


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
