"""The annotation store: the one object the studio talks to.

::

    store = Store("sqlite:///studio.db")            # or "postgresql://user@host/db"
    ds = store.create_dataset("shapes", "/data/shapes/images")
    report = store.import_coco(ds, "/data/shapes/train.json")
    for image in store.list_images(ds):
        anns = store.annotations(image.id)          # AnnotationRecord: .mask (H, W) bool, .bbox ...
    store.update_mask(anns[0].id, new_mask, expected_revision=image.revision)
    store.undo(image.id)
    store.export_coco(ds, "corrected.json")

Ids: ``image_id`` and ``ann_id`` are the store's ids; ``category_id`` is always the category's COCO
id within the dataset. Masks go in and come out as (H, W) bool arrays at the image's size.

Every edit (``add_annotation``, ``update_mask``, ``set_category``, ``set_state``, ``set_states``,
``delete_annotation``, ``set_review_state``, ``replace_predictions``, ``undo``, ``redo``) runs in one
transaction, moves the image to its next revision, is recorded in the image's history, and takes
``expected_revision``: pass the ``revision`` you read and a concurrent change by someone else makes
the call fail with :class:`~annotations.errors.ConflictError` instead of being silently overwritten.
"""

from __future__ import annotations

import getpass
import os
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, ContextManager, Iterator, Sequence

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from annotations import (
    categories,
    coco_export,
    coco_import,
    database,
    editing,
    history,
    predictions,
    registry,
    rle,
)
from annotations.coco_import import ImportReport
from annotations.coco_parse import file_sha256
from annotations.database import read_session, write_session
from annotations.errors import InvalidInputError, NotFoundError
from annotations.records import (
    AnnotationRecord,
    Category,
    DatasetRecord,
    EditRecord,
    ImageRecord,
    ModelVersionRecord,
    TrainingMetricRecord,
    TrainingRunRecord,
)
from annotations.schema import (
    REVIEW_STATES,
    SOURCES,
    STATES,
    Annotation,
    Dataset,
    Edit,
    Image,
)
from annotations.schema import Category as CategoryRow


def _made(edit: editing.ImageEdit) -> str:
    """The end of an edit's summary naming the classes it made (empty: none)."""
    return "".join(f"; made class {c['name']!r}" for c in edit.log.categories if c["change"] == "made")


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Store:
    """Annotation database: datasets, images, categories, annotations, history, models.

    Args:
        url: SQLAlchemy URL; SQLite by default (a file next to the working directory),
            ``postgresql://...`` for PostgreSQL (psycopg 3).
        user: name recorded as the author of edits (default: the OS user); each edit call also
            takes ``user=``.
        migrate: bring the schema to the newest revision on open (default).
    """

    def __init__(
        self, url: str = "sqlite:///studio.db", *, user: str | None = None, migrate: bool = True
    ) -> None:
        self.url = database.normalise_url(url)
        self.user = user or _default_user()
        self.engine = database.make_engine(self.url)
        if migrate:
            database.migrate(self.engine)

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    # ----------------------------------------------------------------------------- datasets

    def create_dataset(self, name: str, image_root: str | os.PathLike[str]) -> int:
        """Create an empty dataset whose image paths are relative to ``image_root``."""
        if not name:
            raise InvalidInputError("a dataset needs a name")
        try:
            with write_session(self.engine) as session:
                dataset = Dataset(name=name, image_root=str(Path(image_root).resolve()))
                session.add(dataset)
                session.flush()
                return dataset.id
        except IntegrityError as error:
            raise InvalidInputError(f"a dataset named '{name}' already exists") from error

    def move_dataset(self, dataset_id: int, image_root: str | os.PathLike[str]) -> None:
        """Point a dataset at the folder its images moved to (image paths stay relative to it)."""
        with write_session(self.engine) as session:
            dataset = session.get(Dataset, dataset_id)
            if dataset is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist")
            dataset.image_root = str(Path(image_root).resolve())

    def list_datasets(self) -> list[DatasetRecord]:
        """All datasets, oldest first, with their image and (non-rejected) annotation counts."""
        images = (
            select(Image.dataset_id, func.count().label("n")).group_by(Image.dataset_id).subquery()
        )
        anns = (
            select(Annotation.dataset_id, func.count().label("n"))
            .where(Annotation.state != "rejected")
            .group_by(Annotation.dataset_id)
            .subquery()
        )
        reviewed = (
            select(Image.dataset_id, func.count().label("n")).where(Image.review_state == "reviewed")
            .group_by(Image.dataset_id).subquery()
        )
        accepted = (
            select(Annotation.dataset_id, func.count().label("n")).where(Annotation.state == "accepted")
            .group_by(Annotation.dataset_id).subquery()
        )
        query = (
            select(Dataset, func.coalesce(images.c.n, 0), func.coalesce(anns.c.n, 0),
                   func.coalesce(reviewed.c.n, 0), func.coalesce(accepted.c.n, 0))
            .outerjoin(images, images.c.dataset_id == Dataset.id)
            .outerjoin(anns, anns.c.dataset_id == Dataset.id)
            .outerjoin(reviewed, reviewed.c.dataset_id == Dataset.id)
            .outerjoin(accepted, accepted.c.dataset_id == Dataset.id)
            .order_by(Dataset.id)
        )
        with read_session(self.engine) as session:
            return [
                DatasetRecord(d.id, d.name, Path(d.image_root), n_img, n_ann, d.created_at, n_rev, n_acc)
                for d, n_img, n_ann, n_rev, n_acc in session.execute(query)
            ]

    def dataset(self, dataset_id: int) -> DatasetRecord:
        """One dataset (raises :class:`NotFoundError`)."""
        for record in self.list_datasets():
            if record.id == dataset_id:
                return record
        raise NotFoundError(f"dataset {dataset_id} does not exist")

    # ------------------------------------------------------------------------ import / export

    def import_coco(
        self,
        dataset_id: int,
        json_path: str | os.PathLike[str],
        image_root: str | os.PathLike[str] | None = None,
        *,
        source: str = "imported",
        check_files: bool = True,
        strict: bool = False,
        match_by_name: bool = False,
        display_name: str | None = None,
    ) -> ImportReport:
        """Import a COCO instances file in one transaction (see :mod:`annotations.coco_import`):
        repairs and refusals are listed in the report (``report.lines()``).

        Raises:
            CocoFormatError: not a COCO file, no usable image, a clash with the dataset, or any
                finding with ``strict``; the offending item named, nothing written.
        """
        return coco_import.import_coco(
            self.engine, dataset_id, json_path, image_root,
            source=source, check_files=check_files, user=self.user, strict=strict,
            match_by_name=match_by_name, display_name=display_name,
        )

    def export_coco(
        self,
        dataset_id: int,
        out_path: str | os.PathLike[str],
        *,
        only_reviewed: bool = False,
        include: str = "accepted",
        polygons: bool = False,
        kept_rle: list[int] | None = None,
        repaired: list[str] | None = None,
    ) -> Path:
        """Write the dataset as COCO JSON, atomically (see :func:`coco_export.export_coco`);
        ``repaired`` gets a line per non-finite value written as null."""
        return coco_export.export_coco(
            self.engine, dataset_id, out_path,
            only_reviewed=only_reviewed, include=include, polygons=polygons, kept_rle=kept_rle,
            repaired=repaired,
        )

    def export_results(
        self, dataset_id: int, out_path: str | os.PathLike[str], *,
        model_version: str | None = None,
    ) -> Path:
        """Write the dataset's predictions in the COCO results format, atomically."""
        return coco_export.export_results(
            self.engine, dataset_id, out_path, model_version=model_version
        )

    # -------------------------------------------------------------------------------- images

    def add_image(
        self, dataset_id: int, file_name: str, width: int, height: int, *,
        coco_id: int | None = None,
    ) -> int:
        """Add an image (no annotations); returns its store id.

        ``file_name`` is relative to the dataset's image root; when the file exists its SHA-256
        is recorded. ``coco_id`` defaults to the next unused image id of the dataset.
        """
        if not file_name or width <= 0 or height <= 0:
            raise InvalidInputError(f"image '{file_name}': needs a file name and a positive size")
        root = self.dataset(dataset_id).image_root
        path = root / file_name
        content_hash = file_sha256(path) if path.is_file() else None
        with write_session(self.engine) as session:
            taken = session.scalar(select(Image.id).where(
                Image.dataset_id == dataset_id, Image.file_name == file_name))
            if taken is not None:
                raise InvalidInputError(f"image '{file_name}' is already in dataset {dataset_id}")
            coco_id = editing.claim_id(session, dataset_id, Dataset.next_image_id, Image, coco_id)
            image = Image(
                dataset_id=dataset_id, coco_id=coco_id, file_name=file_name, rel_path=file_name,
                width=int(width), height=int(height), content_hash=content_hash,
                review_state="unreviewed", revision=0,
            )
            session.add(image)
            session.flush()
            return image.id

    def list_images(self, dataset_id: int) -> list[ImageRecord]:
        """The dataset's images in COCO id order, with their non-rejected annotation counts."""
        counts = (
            select(Annotation.image_id, func.count().label("n"))
            .where(Annotation.dataset_id == dataset_id, Annotation.state != "rejected")
            .group_by(Annotation.image_id)
            .subquery()
        )
        query = (
            select(Image, func.coalesce(counts.c.n, 0))
            .outerjoin(counts, counts.c.image_id == Image.id)
            .where(Image.dataset_id == dataset_id)
            .order_by(Image.coco_id)
        )
        with read_session(self.engine) as session:
            if session.get(Dataset, dataset_id) is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist")
            return [ImageRecord.from_row(image, n) for image, n in session.execute(query)]

    def image(self, image_id: int) -> ImageRecord:
        """One image, with its current revision."""
        with read_session(self.engine) as session:
            return ImageRecord.from_row(self._image_row(session, image_id))

    def image_path(self, image_id: int) -> Path:
        """Absolute path of the image file (dataset root / relative path)."""
        with read_session(self.engine) as session:
            image = self._image_row(session, image_id)
            root = session.scalar(select(Dataset.image_root).where(Dataset.id == image.dataset_id))
            return Path(root) / image.rel_path

    @staticmethod
    def _image_row(session: Any, image_id: int) -> Image:
        image = session.get(Image, image_id)
        if image is None:
            raise NotFoundError(f"image {image_id} does not exist")
        return image

    # ---------------------------------------------------------------------------- categories

    def categories(self, dataset_id: int) -> list[Category]:
        """The dataset's categories in COCO id order (``Category.id`` is the COCO id)."""
        with read_session(self.engine) as session:
            rows = session.scalars(
                select(CategoryRow)
                .where(CategoryRow.dataset_id == dataset_id)
                .order_by(CategoryRow.coco_id)
            )
            return [Category(row.coco_id, row.name, row.supercategory) for row in rows]

    def add_category(
        self, dataset_id: int, name: str, coco_id: int | None = None, *,
        supercategory: str | None = None,
    ) -> int:
        """Add a category; returns its COCO id (default: the next unused one)."""
        if not name:
            raise InvalidInputError("a category needs a name")
        with write_session(self.engine) as session:
            if session.get(Dataset, dataset_id) is None:
                raise NotFoundError(f"dataset {dataset_id} does not exist")
            coco_id = editing.claim_id(
                session, dataset_id, Dataset.next_category_id, CategoryRow, coco_id
            )
            session.add(CategoryRow(dataset_id=dataset_id, coco_id=coco_id, name=name,
                                    supercategory=supercategory))
            return coco_id

    def remove_unused_category(self, dataset_id: int, coco_id: int) -> str:
        """Remove a category that no annotation carries (an undo or redo that brings one of its
        annotations back makes it again, same id and name); returns its name.

        Raises:
            NotFoundError: no such category in the dataset.
            InvalidInputError: an annotation carries it (merge it instead).
        """
        with write_session(self.engine) as session:
            return categories.remove_unused(session, dataset_id, coco_id)

    def rename_category(self, dataset_id: int, coco_id: int, name: str) -> str:
        """Give a category another name (case and spacing of a name another class has count as
        that name: refused, merge instead); returns the old name."""
        with write_session(self.engine) as session:
            return categories.rename(session, dataset_id, coco_id, name)

    def merge_categories(self, dataset_id: int, source: int, target: int, *,
                         user: str | None = None) -> dict[int, list[int]]:
        """Give every annotation of category ``source`` the category ``target`` and remove
        ``source``: one history edit per image it changes (undo there gives those annotations
        ``source`` back, the class made again); see :func:`annotations.categories.merge`.
        Returns image id -> the annotation ids that changed class."""
        with write_session(self.engine) as session:
            return categories.merge(session, dataset_id, source, target, user or self.user)

    def category_usage(self, dataset_id: int) -> dict[int, int]:
        """COCO category id -> how many annotations (any state) carry it."""
        with read_session(self.engine) as session:
            return categories.usage(session, dataset_id)

    # --------------------------------------------------------------------------- annotations

    def annotations(self, image_id: int, include_rejected: bool = False) -> list[AnnotationRecord]:
        """The image's annotations in creation order; masks decode lazily (``record.mask``)."""
        with read_session(self.engine) as session:
            image = self._image_row(session, image_id)
            query = select(Annotation).where(Annotation.image_id == image_id)
            if not include_rejected:
                query = query.where(Annotation.state != "rejected")
            rows = session.scalars(query.order_by(Annotation.id))
            return [AnnotationRecord.from_row(a, image.height, image.width) for a in rows]

    def annotation(self, ann_id: int) -> AnnotationRecord:
        """One annotation (raises :class:`NotFoundError`)."""
        with read_session(self.engine) as session:
            ann = session.get(Annotation, ann_id)
            if ann is None:
                raise NotFoundError(f"annotation {ann_id} does not exist")
            image = self._image_row(session, ann.image_id)
            return AnnotationRecord.from_row(ann, image.height, image.width)

    def add_annotation(
        self,
        image_id: int,
        mask: np.ndarray,
        category_id: int | str,
        *,
        source: str = "human",
        state: str | None = None,
        score: float | None = None,
        model_version: str | None = None,
        expected_revision: int | None = None,
        user: str | None = None,
    ) -> int:
        """Add an instance to an image; returns its annotation id.

        ``category_id``: a COCO id of the dataset, or a class name (a str): the class of that
        name, made in the same edit when there is none (its undo removes the class again).
        ``state`` defaults to ``"proposed"`` for ``source="predicted"``, else ``"accepted"``.
        """
        editing.require_choice(source, SOURCES, "source")
        state = editing.require_choice(
            state or ("proposed" if source == "predicted" else "accepted"), STATES, "state"
        )
        with self._edit(image_id, "add_annotation", f"add_annotation on image {image_id}",
                        expected_revision, user) as edit:
            image = edit.image
            mask = rle.check_mask(mask, image.height, image.width, f"image {image_id}")
            category_id = categories.category_in_edit(edit, category_id)
            [ann] = editing.insert_annotations(edit, [editing.NewAnnotation(
                rle.encode_mask(mask), category_id, source, state, score, model_version)])
            edit.summary = f"add_annotation {ann.id} (category {category_id})" + _made(edit)
            return ann.id

    def place_proposal(
        self,
        image_id: int,
        mask: np.ndarray,
        category_id: int,
        score: float,
        model_version: str,
        point: tuple[int, int],
        *,
        replaces: int | None = None,
        expected_revision: int | None = None,
        user: str | None = None,
    ) -> int:
        """Store the instance of a query a person placed at ``point`` ``(x, y)`` (image pixels)
        as a proposal: ``source="predicted"``, ``state="proposed"``, the model version, and
        ``extra={"placed_query": [x, y]}`` (exported with the annotation). ``replaces``: the
        undecided placed proposal this one re-places, deleted in the same edit (one undo step).
        Returns the new annotation id.

        Raises:
            InvalidInputError: the image is reviewed, or ``replaces`` is not an undecided placed
                proposal of this image (a decided annotation is never replaced).
        """
        with self._edit(image_id, "place_proposal", f"place_proposal on image {image_id}",
                        expected_revision, user) as edit:
            editing.refuse_proposals_if_reviewed(edit.image, "proposed")
            editing.require_category(edit.session, edit.image.dataset_id, category_id)
            mask = rle.check_mask(mask, edit.image.height, edit.image.width, f"image {image_id}")
            if replaces is not None:
                old = editing.locked_annotation(edit.session, replaces)
                if old.image_id != image_id or old.state != "proposed" or not (old.extra or {}).get("placed_query"):
                    raise InvalidInputError(
                        f"annotation {replaces} is not an undecided placed proposal of image {image_id}")
                edit.log.changed(old.id, history.snapshot(old), None)
                edit.session.delete(old)
                edit.session.flush()
            x, y = (int(v) for v in point)
            [ann] = editing.insert_annotations(edit, [editing.NewAnnotation(
                rle.encode_mask(mask), category_id, "predicted", "proposed", float(score), model_version,
                {"placed_query": [x, y]})])
            edit.summary = (f"place_proposal {ann.id} at (x={x}, y={y})"
                            + (f" replacing {replaces}" if replaces is not None else ""))
            return ann.id

    def update_mask(
        self, ann_id: int, mask: np.ndarray, expected_revision: int | None = None, *,
        user: str | None = None,
    ) -> None:
        """Replace an annotation's mask (bbox and area follow).

        A still-proposed prediction that a person edits becomes ``source="human"``,
        ``state="accepted"``, so the next prediction run does not replace it.
        """
        with self._edit_annotation(ann_id, "update_mask", expected_revision, user) as (edit, ann):
            image = edit.image
            mask = rle.check_mask(mask, image.height, image.width, f"annotation {ann_id}")
            before = history.snapshot(ann)
            editing.set_mask(ann, rle.encode_mask(mask), image.height, image.width)
            editing.adopt(ann)
            edit.log.changed(ann.id, before, history.snapshot(ann))

    def set_category(
        self, ann_id: int, category_id: int | str, expected_revision: int | None = None, *,
        user: str | None = None,
    ) -> None:
        """Relabel an annotation: ``category_id`` is a COCO id of its dataset, or a class name
        (a str) as in :meth:`add_annotation`.

        Relabelling changes the class only, never the state: a proposal stays undecided, but
        becomes the person's (``source="human"``), so the next prediction run keeps it.
        """
        with self._edit_annotation(ann_id, "set_category", expected_revision, user) as (edit, ann):
            category_id = categories.category_in_edit(edit, category_id)
            before = history.snapshot(ann)
            ann.category_id = int(category_id)
            editing.claim(ann)
            edit.log.changed(ann.id, before, history.snapshot(ann))
            edit.summary += _made(edit)

    def set_state(
        self, ann_id: int, state: str, expected_revision: int | None = None, *,
        user: str | None = None,
    ) -> None:
        """Set an annotation's state: ``"accepted"``, ``"rejected"`` or ``"proposed"``.

        Raises:
            InvalidInputError: ``"proposed"`` on a reviewed image (a reviewed image holds no
                undecided proposal).
        """
        editing.require_choice(state, STATES, "state")
        with self._edit_annotation(ann_id, "set_state", expected_revision, user) as (edit, ann):
            editing.refuse_proposals_if_reviewed(edit.image, state)
            before = history.snapshot(ann)
            ann.state = state
            edit.log.changed(ann.id, before, history.snapshot(ann))
            edit.summary = f"set_state {state} on annotation {ann_id}"

    def set_states(
        self, image_id: int, states: dict[int, str], expected_revision: int | None = None, *,
        summary: str | None = None, user: str | None = None,
    ) -> None:
        """Set the state of several annotations of one image as one edit (one undo step).

        ``states`` maps annotation id -> ``"accepted"``, ``"rejected"`` or ``"proposed"``.

        Raises:
            NotFoundError: an id that is not an annotation of this image.
        """
        for state in states.values():
            editing.require_choice(state, STATES, "state")
        ids = sorted(int(i) for i in states)
        default = ", ".join(f"#{i} {states[i]}" for i in ids)
        with self._edit(image_id, "set_states", f"set_states {default}", expected_revision,
                        user) as edit:
            for ann_id in ids:
                ann = editing.locked_annotation(edit.session, ann_id)
                if ann.image_id != image_id:
                    raise NotFoundError(f"annotation {ann_id} is not on image {image_id}")
                editing.refuse_proposals_if_reviewed(edit.image, states[ann_id])
                before = history.snapshot(ann)
                ann.state = states[ann_id]
                edit.log.changed(ann.id, before, history.snapshot(ann))
            edit.summary = summary or f"set_states {default}"

    def delete_annotation(
        self, ann_id: int, expected_revision: int | None = None, *, user: str | None = None
    ) -> None:
        """Delete an annotation (undo brings it back under the same id)."""
        with self._edit_annotation(ann_id, "delete_annotation", expected_revision, user) as (
            edit, ann,
        ):
            edit.log.changed(ann.id, history.snapshot(ann), None)
            edit.session.delete(ann)

    def set_review_state(
        self, image_id: int, state: str, expected_revision: int | None = None, *,
        undecided: str = "refuse", min_score: float = 0.0, user: str | None = None,
    ) -> dict[str, int]:
        """Set the image's review state: ``"unreviewed"``, ``"in_progress"`` or ``"reviewed"``.

        A reviewed image never holds an undecided proposal, so that export, fine-tuning and
        evaluation cannot read one as "no object". For ``"reviewed"``, ``undecided`` says what
        to do with the image's proposals, in the same edit (one undo step): ``"refuse"`` (raise
        :class:`UndecidedProposalsError`), ``"accept"`` (accept those scoring at least
        ``min_score``, reject the rest) or ``"reject"`` (reject them all).

        Returns:
            ``{"accepted": n, "rejected": m}``: the proposals decided by this call.
        """
        editing.require_choice(state, REVIEW_STATES, "review state")
        editing.require_choice(undecided, ("refuse", "accept", "reject"), "undecided")
        decided = {"accepted": 0, "rejected": 0}
        with self._edit(image_id, "set_review_state", f"set_review_state {state}",
                        expected_revision, user) as edit:
            if state == "reviewed":
                decided = editing.decide_proposals(edit, undecided, min_score)
            edit.log.review_state = (edit.image.review_state, state)
            edit.image.review_state = state
            if decided["accepted"] or decided["rejected"]:
                edit.summary += (f" (accepted {decided['accepted']}, rejected "
                                 f"{decided['rejected']} undecided proposals)")
        return decided

    def replace_predictions(
        self,
        image_id: int,
        masks: np.ndarray | Sequence[np.ndarray],
        category_ids: Sequence[int],
        scores: Sequence[float],
        model_version: str,
        expected_revision: int | None = None,
        *,
        match_iou: float = predictions.MATCH_IOU,
        user: str | None = None,
    ) -> list[int | None]:
        """Replace the image's still-proposed predictions with new ones, as one edit.

        Human, imported, accepted and rejected annotations stay, and a new mask matching one of
        them (mask IoU >= ``match_iou``) is not stored: the person already decided about that
        object. Returns the new annotation ids aligned with ``masks``; an empty or matched mask
        gets ``None``. The history entry says how many proposals were replaced and matched.

        Raises:
            InvalidInputError: the image is reviewed (reopen it first), or bad arguments.
        """
        stack = predictions.mask_stack(masks, len(category_ids), len(scores))
        with self._edit(image_id, "replace_predictions",
                        f"replace_predictions from {model_version}", expected_revision,
                        user) as edit:
            if edit.image.review_state == "reviewed":
                raise InvalidInputError(
                    f"image {image_id} '{edit.image.file_name}' is reviewed: reopen it before "
                    f"predicting again")
            dropped = predictions.drop_proposals(edit)
            ids, matched = predictions.add_predictions(
                edit, stack, category_ids, scores, model_version, match_iou)
            added = sum(i is not None for i in ids)
            edit.summary = (f"replace_predictions from {model_version}: {dropped} undecided "
                            f"proposals replaced by {added}; {matched} matched decided annotations")
            return ids

    # ------------------------------------------------------------------------------- history

    def undo(self, image_id: int, expected_revision: int | None = None, *,
             user: str | None = None) -> EditRecord | None:
        """Revert the image's newest applied edit (one user action); returns that edit (its
        ``summary`` says what was undone), or None when there is nothing to undo."""
        return editing.step_history(self.engine, image_id, "undo", expected_revision,
                                    user or self.user)

    def redo(self, image_id: int, expected_revision: int | None = None, *,
             user: str | None = None) -> EditRecord | None:
        """Re-apply the most recently undone edit; returns it, or None when there is none."""
        return editing.step_history(self.engine, image_id, "redo", expected_revision,
                                    user or self.user)

    def last_applied_edit(self, image_id: int) -> EditRecord | None:
        """The edit an undo of the image would revert (None when there is none)."""
        with read_session(self.engine) as session:
            self._image_row(session, image_id)
            edit = history.last_applied(session, image_id)
            return None if edit is None else EditRecord.from_row(edit)

    def history(self, image_id: int) -> list[EditRecord]:
        """The image's edit history, oldest first."""
        with read_session(self.engine) as session:
            self._image_row(session, image_id)
            edits = session.scalars(
                select(Edit).where(Edit.image_id == image_id).order_by(Edit.id)
            )
            return [EditRecord.from_row(edit) for edit in edits]

    # ---------------------------------------------------------------------- models and runs

    def record_model_version(
        self, name: str, path: str | os.PathLike[str] | None = None,
        metrics: dict[str, Any] | None = None, *, parent: str | None = None,
        dataset_revision: str | None = None, run_id: int | None = None,
    ) -> int:
        """Register a model version (unique name, optional checkpoint path and metrics, the
        version it was fine-tuned from, the dataset revision and run that made it)."""
        return registry.record_model_version(self.engine, name, path, metrics, parent=parent,
                                             dataset_revision=dataset_revision, run_id=run_id)

    def list_model_versions(self) -> list[ModelVersionRecord]:
        """Registered model versions, oldest first."""
        return registry.list_model_versions(self.engine)

    def set_active_model_version(self, dataset_id: int, name: str) -> None:
        """Remember that the dataset's studio predicts with the recorded version ``name``."""
        registry.set_active_model_version(self.engine, dataset_id, name)

    def active_model_version(self, dataset_id: int) -> ModelVersionRecord | None:
        """The version the dataset's studio last chose (None: never chosen)."""
        return registry.active_model_version(self.engine, dataset_id)

    def model_version(self, name: str) -> ModelVersionRecord | None:
        """The model version called ``name``, or None."""
        return registry.model_version(self.engine, name)

    def record_training_run(self, name: str, **fields: Any) -> int:
        """Record a training run; see :func:`annotations.registry.record_training_run`."""
        return registry.record_training_run(self.engine, name, **fields)

    def list_training_runs(self, dataset_id: int | None = None) -> list[TrainingRunRecord]:
        """Recorded training runs (of one dataset, if given), oldest first."""
        return registry.list_training_runs(self.engine, dataset_id)

    def training_run(self, run_id: int) -> TrainingRunRecord:
        """One training run (NotFoundError if unknown)."""
        return registry.training_run(self.engine, run_id)

    def update_training_run(self, run_id: int, **fields: Any) -> bool:
        """Change a run's status, progress, worker or results; see
        :func:`annotations.registry.update_training_run`."""
        return registry.update_training_run(self.engine, run_id, **fields)

    def add_training_metrics(self, run_id: int, points: Any) -> None:
        """Append ``(iteration, kind, values)`` curve points to a run."""
        registry.add_training_metrics(self.engine, run_id, points)

    def training_metrics(self, run_id: int, kind: str | None = None) -> list[TrainingMetricRecord]:
        """A run's curve points in iteration order."""
        return registry.training_metrics(self.engine, run_id, kind)

    def drop_training_metrics_after(self, run_id: int, iteration: int) -> None:
        """Forget a run's curve points after ``iteration``."""
        registry.drop_training_metrics_after(self.engine, run_id, iteration)

    def image_splits(self, dataset_id: int) -> dict[int, str]:
        """image id -> "train" / "val" / "test" for the images that have a split."""
        return registry.image_splits(self.engine, dataset_id)

    def assign_image_splits(self, dataset_id: int, choose: Any) -> dict[int, str]:
        """Give images without a split one (never changing existing ones); see
        :func:`annotations.registry.assign_image_splits`."""
        return registry.assign_image_splits(self.engine, dataset_id, choose)

    # ------------------------------------------------------------------------------ helpers

    def _edit(self, image_id: int, action: str, summary: str, expected_revision: int | None,
              user: str | None) -> ContextManager[editing.ImageEdit]:
        return editing.edit_image(
            self.engine, image_id, action=action, summary=summary,
            expected_revision=expected_revision, user=user or self.user,
        )

    @contextmanager
    def _edit_annotation(
        self, ann_id: int, action: str, expected_revision: int | None, user: str | None
    ) -> Iterator[tuple[editing.ImageEdit, Annotation]]:
        """An image edit of the image owning ``ann_id``; yields the edit and the locked row."""
        with read_session(self.engine) as session:
            image_id = editing.image_of_annotation(session, ann_id)
        summary = f"{action} on annotation {ann_id}"
        with self._edit(image_id, action, summary, expected_revision, user) as edit:
            yield edit, editing.locked_annotation(edit.session, ann_id)
