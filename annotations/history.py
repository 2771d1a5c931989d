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

MADE = {"made": True}   # Category.extra of a class a person made by labelling with a new name

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


def remove_category(session: Session, dataset_id: int, row: Category) -> None:
    """Remove a category row that no annotation carries. Every edit of the dataset whose rows
    name it (and that does not record it itself) records it as "needed", so that an undo or redo
    bringing such an annotation back makes the category again (same COCO id and name) first.
    Reads every edit of the dataset: for rare changes only."""
    images = select(Image.id).where(Image.dataset_id == dataset_id)
    for edit in session.scalars(select(Edit).where(Edit.image_id.in_(images))):
        payload = edit.payload
        if records_category(payload, row.coco_id) or not any(
                snap is not None and snap.get("category_id") == row.coco_id
                for change in payload.get("annotations", []) for snap in (change.get("before"), change.get("after"))):
            continue
        needed = {"change": "needed", "coco_id": row.coco_id, "name": row.name}
        session.execute(update(Edit).where(Edit.id == edit.id).values(
            payload={**payload, "categories": [*payload.get("categories", []), needed]}))
    session.delete(row)
    session.flush()


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
    _drop_unused_made(session, image, edit)
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
    _drop_unused_made(session, image, edit)
    review = payload.get("image", {}).get("review_state")
    if review:
        image.review_state = review[1]
    edit.status = "applied"


def _drop_unused_made(session: Session, image: Image, edit: Edit) -> None:
    """After an undo or redo: a class a person made by labelling (``extra["made"]``) that the
    edit's rows name and that no annotation carries any more goes (:func:`remove_category`); the
    model's and imported classes stay whatever carries them."""
    named = {snap["category_id"] for change in edit.payload["annotations"]
             for snap in (change["before"], change["after"]) if snap is not None}
    for coco_id in sorted(named):
        row = session.scalar(select(Category).where(
            Category.dataset_id == image.dataset_id, Category.coco_id == coco_id))
        if row is None or not (row.extra or {}).get("made"):
            continue
        session.flush()
        carried = session.scalar(select(Annotation.id).where(
            Annotation.dataset_id == image.dataset_id, Annotation.category_id == coco_id).limit(1))
        if carried is None:
            remove_category(session, image.dataset_id, row)


def _categories(session: Session, image: Image, edit: Edit, changes: tuple[str, ...], then: str) -> None:
    """Replay the edit's category records of the kinds ``changes`` ("made", "removed", or
    "needed": a class removed later that this edit's rows name): ``then="made"`` puts each such
    category back (same COCO id and name) unless it is there, ``then="removed"`` removes it
    unless an annotation carries it (:func:`remove_category`)."""
    for item in edit.payload.get("categories", []):
        if item["change"] not in changes:
            continue
        row = session.scalar(select(Category).where(
            Category.dataset_id == image.dataset_id, Category.coco_id == item["coco_id"]))
        if then == "made" and row is None:
            session.add(Category(dataset_id=image.dataset_id, coco_id=item["coco_id"], name=item["name"],
                                 extra=MADE))
            session.flush()
        elif then == "removed" and row is not None:
            session.flush()
            carried = session.scalar(select(Annotation.id).where(
                Annotation.dataset_id == image.dataset_id, Annotation.category_id == item["coco_id"]).limit(1))
            if carried is None:
                remove_category(session, image.dataset_id, row)


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
