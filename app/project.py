"""The studio's project: the annotation store, the images on disk and the one model, behind the
few operations the views need. Every change a person makes goes through here to the store at once.

Predictions live in the store as ``source="predicted", state="proposed"`` annotations (written by
``Store.replace_predictions``), so accepting, rejecting, relabelling and undoing them are ordinary
store edits. The ``fastinst.Prediction`` that made them (with its explanation) is kept in a
process-wide LRU cache keyed by ``(model version, image id)``; which query produced which
annotation is remembered per annotation id, and recovered from a fresh forward pass after a restart.
"""
from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

import numpy as np
from annotations import ConflictError, DatasetRecord, ImageRecord, InvalidInputError, NotFoundError, Store
from annotations.coco_parse import UPLOAD_FOLDER, normal_file_name
from fastinst.errors import ImageError
from fastinst.images import IMAGE_SUFFIXES, decoded_size
from app.session import LRUCache, ModelSlot
from training.bootstrap import Interval

PROPOSAL_FLOOR = 0.05     # predictions below this score are not stored at all


class StudioError(Exception):
    """A problem to show to the person using the studio (bad file, missing image, ...)."""


@dataclass(frozen=True, eq=False)
class Instance:
    """One annotation of an image, decoded: mask (H,W) bool at image size."""

    id: int
    mask: np.ndarray
    category_id: int
    class_name: str
    score: float | None
    source: str            # imported | predicted | human
    state: str             # proposed | accepted | rejected
    query: int | None = None
    model_version: str | None = None
    bbox: tuple[int, int, int, int] = (0, 0, 0, 0)   # (x, y, w, h) pixels, from the store
    area: int = 0                                    # mask pixels, from the store
    placed_at: tuple[int, int] | None = None         # (x, y) of the query a person placed, if any


@dataclass(frozen=True)
class PredictOutcome:
    """What one prediction run did to an image's proposals."""

    version: str
    replaced: int      # undecided proposals it removed
    added: int         # new proposals stored
    matched: int       # predicted masks not stored: they match an annotation a person decided

    def message(self) -> str:
        """One line for the status."""
        text = f"{self.added} proposals from {self.version}"
        if self.replaced:
            text += f" (replacing {self.replaced} undecided)"
        if self.matched:
            text += f"; {self.matched} matched your decided annotations and were not proposed again"
        return text


def test_ap(record: Any) -> Interval | None:
    """A model version's mask AP (0-100) on its run's test images, with its 95% interval and the
    images and objects it rests on (:mod:`training.verdict`), or None when unknown.

    Versions registered before the test split (or from elsewhere) give ``metrics["held_out"]
    ["segm/AP"]`` or a flat ``metrics["held_out_ap"]``: a figure without an interval.
    """
    metrics = getattr(record, "metrics", None) or {}
    measured = (metrics.get("test") or {}).get("segm/AP")
    if isinstance(measured, dict):
        return Interval.from_dict(measured)
    value = (metrics.get("held_out") or {}).get("segm/AP", metrics.get("held_out_ap"))
    return None if value is None else Interval(float(value), None, None, int(metrics.get("held_out_images") or 0), 0)


def ap_text(interval: Interval | None) -> str:
    """An AP with its interval and what it rests on; "—" when unknown."""
    if interval is None or interval.value is None or interval.low is not None:
        return "—" if interval is None else interval.text()
    return f"{interval.value:.1f} (no interval recorded)"


def file_version(path: Path) -> str:
    """A model version name for a weights file: its stem and the start of its SHA-256 (the
    rule fine-tuning runs name their models by, ``training.finetune.version_name``)."""
    from training.finetune import version_name
    return version_name(path)


def read_pixels(path: Path) -> np.ndarray:
    """An image file -> (H,W,3) uint8 RGB, or StudioError naming the file."""
    from fastinst.images import load_image
    try:
        return load_image(path)
    except ImageError as e:
        raise StudioError(str(e)) from None


class Project:
    """One dataset of the store, its images and the model, shared by every session of the process.

    Args:
        store: the annotation store.
        dataset_id: the dataset this studio works on.
        model: the process's one model.
        cache_size: how many predictions (with explanations) and decoded images to keep.
        work_dir: where exports and fine-tuning runs are written.
    """

    def __init__(self, store: Store, dataset_id: int, model: ModelSlot, *, cache_size: int = 32,
                 work_dir: Path = Path("studio-data/project")) -> None:
        self.store = store
        self.dataset_id = dataset_id
        self.model = model
        self.work_dir = Path(work_dir)
        self.predictions: LRUCache[Any] = LRUCache(cache_size)
        self.pixels_cache: LRUCache[np.ndarray] = LRUCache(cache_size)
        self.instances_cache: LRUCache[list[Instance]] = LRUCache(4 * cache_size)
        # each image's last decoded masks by (annotation id, RLE): an edit re-decodes only what changed
        self.masks_cache: LRUCache[dict[tuple[int, str], np.ndarray]] = LRUCache(cache_size)
        self._queries: dict[int, int] = {}   # annotation id -> query index (current process)
        self.failed: dict[tuple[str, int], str] = {}   # (model version, image id) -> why it failed
        self._slots: dict[str, ModelSlot] = {}          # loaded model versions, for switching back
        self.sync_categories()

    # ------------------------------------------------------------------ images and categories

    def images(self) -> list[ImageRecord]:
        """Every image of the dataset in COCO id order."""
        return self.store.list_images(self.dataset_id)

    def image(self, image_id: int) -> ImageRecord:
        """One image of this project with its current revision and review state.

        Raises StudioError for an id of another project in the same store (a link or bookmark
        from it): this studio never shows or edits that project's images.
        """
        record = self.store.image(image_id)
        if record.dataset_id != self.dataset_id:
            raise StudioError(f"image #{image_id} belongs to another project of this store, not to "
                              f"{self.store.dataset(self.dataset_id).name!r}; open it in a studio serving that "
                              f"project")
        return record

    def pixels(self, image_id: int) -> np.ndarray:
        """The image as (H,W,3) uint8 RGB (cached); StudioError when the file is unreadable."""
        def load() -> np.ndarray:
            rgb = read_pixels(self.store.image_path(image_id))
            entry = self.image(image_id)
            if rgb.shape[:2] != (entry.height, entry.width):
                raise StudioError(f"image {entry.file_name} is {rgb.shape[1]}x{rgb.shape[0]} on disk but "
                                  f"{entry.width}x{entry.height} in the annotations")
            return rgb
        return self.pixels_cache.get_or_create(image_id, load)

    def neighbour(self, image_id: int | None, step: int) -> int | None:
        """The id of the image ``step`` places after ``image_id`` (wrapping), or the first."""
        ids = [e.id for e in self.images()]
        if not ids:
            return None
        if image_id not in ids:
            return ids[0]
        return ids[(ids.index(image_id) + step) % len(ids)]

    def categories(self) -> list[tuple[int, str]]:
        """(COCO category id, name) pairs of the dataset."""
        return [(c.id, c.name) for c in self.store.categories(self.dataset_id)]

    def class_names(self) -> list[str]:
        """Names of the dataset's categories, in id order."""
        return [name for _, name in self.categories()]

    def category_id(self, name: str) -> int:
        """The COCO id of the category called ``name``."""
        for cid, cname in self.categories():
            if cname == name:
                return cid
        raise StudioError(f"no category called {name!r}")

    def label_class(self, name: str) -> tuple[int | str, bool]:
        """The class a person labels with (relabel, a drawn mask): ``(COCO id, False)`` for an
        existing class (a name that differs only in case or spacing is that class), ``(the
        cleaned name, True)`` for a new one: the store makes it inside the edit that labels with
        it (``Store.set_category``), so that edit's undo removes it again.

        Raises StudioError: an empty name."""
        name = " ".join((name or "").split())
        if not name:
            raise StudioError("type or choose a class name first")
        for cid, cname in self.categories():       # "Circle" and "circle " are the class "circle"
            if " ".join(cname.split()).casefold() == name.casefold():
                return cid, False
        return name, True

    def sync_categories(self) -> None:
        """Make sure every class the model predicts exists as a category (matched by name)."""
        have = set(self.class_names())
        for name in self.model.predictor.class_names:
            if name not in have:
                self.store.add_category(self.dataset_id, name)

    # ----------------------------------------------------------------------------- predictions

    def prediction(self, image_id: int) -> Any:
        """The current model's Prediction for the image (with explanation), from cache or a new
        forward pass under the model lock; instances scoring below PROPOSAL_FLOOR are dropped."""
        version = self.model.version
        return self.predictions.get_or_create(
            (version, image_id),
            lambda: self.model.run(lambda p: p.predict(self.pixels(image_id), min_score=PROPOSAL_FLOOR)))

    def was_predicted(self, image_id: int) -> bool:
        """True when the current model already wrote proposals for this image (even if all of them
        were later rejected, deleted or undone)."""
        tag = f"replace_predictions from {self.model.version}"
        return any(e.action == "replace_predictions" and (e.summary == tag or e.summary.startswith(tag + ":"))
                   for e in self.store.history(image_id))

    def needs_prediction(self, image_id: int) -> bool:
        """True unless the image is reviewed, or the current model predicted it and every undecided
        proposal on it is the current model's (after a switch back, the other version's undecided
        proposals are replaced; what a person decided always stays)."""
        entry = self.image(image_id)
        if entry.review_state == "reviewed":
            return False
        if not self.was_predicted(image_id):
            return True
        return any(i.state == "proposed" and i.source == "predicted" and i.model_version != self.model.version
                   for i in self.instances(image_id, entry.revision))

    def predict(self, image_id: int, expected_revision: int | None = None,
                force: bool = False) -> PredictOutcome | None:
        """Write the current model's predictions as proposals (replacing undecided ones).

        Skipped, returning None, unless the image ``needs_prediction`` or ``force``. A forward pass that fails is remembered per (model version, image) and
        raised as StudioError, so the image is shown as failed, never as an image with no objects.
        """
        entry = self.image(image_id)
        if not force and not self.needs_prediction(image_id):
            return None
        version = self.model.version
        try:
            pred = self.prediction(image_id)
        except Exception as e:  # noqa: BLE001 - any failure of the model is shown as a failure
            self.failed[(version, image_id)] = f"{type(e).__name__}: {e}"
            raise StudioError(f"prediction failed on {entry.file_name}: {e}") from None
        self.failed.pop((version, image_id), None)
        names = pred.class_names
        cats = [self.category_id(names[int(c)]) for c in pred.classes]
        before = sum(i.state == "proposed" for i in self.instances(image_id, entry.revision))
        ids = self.edit(image_id, expected_revision, lambda rev: self.store.replace_predictions(
            image_id, pred.masks, cats, [float(s) for s in pred.scores], version, rev))
        for ann_id, query in zip(ids, pred.query_indices):
            if ann_id is not None:
                self._queries[ann_id] = int(query)
        nonempty = int(sum(bool(m.any()) for m in pred.masks))
        added = sum(i is not None for i in ids)
        return PredictOutcome(version, before, added, nonempty - added)

    def prediction_failure(self, image_id: int) -> str | None:
        """Why the current model's prediction of this image failed, if it did."""
        return self.failed.get((self.model.version, image_id))

    def _query_of(self, record: Any, image_id: int, names: dict[int, str]) -> int | None:
        """Which query of the current model produced a predicted annotation, if known or
        recoverable (same model version: match class and score in a fresh forward pass)."""
        if record.source != "predicted" or record.model_version != self.model.version:
            return None
        if record.id in self._queries:
            return self._queries[record.id]
        pred = self.prediction(image_id)
        for k in range(len(pred)):
            if (names.get(record.category_id) == pred.class_names[int(pred.classes[k])]
                    and record.score is not None and abs(float(pred.scores[k]) - record.score) < 1e-6):
                self._queries[record.id] = int(pred.query_indices[k])
                return self._queries[record.id]
        return None

    def class_names_by_id(self) -> dict[int, str]:
        """COCO category id -> name."""
        return dict(self.categories())

    # --------------------------------------------------------------------------- model versions

    def model_versions(self) -> list[Any]:
        """Every recorded model version (the one the project started with included), oldest first."""
        return self.store.list_model_versions()

    def switch_model(self, version: str) -> None:
        """Predict with another recorded version from now on (every session; loaded models are
        kept, so switching back is immediate). Cached predictions stay keyed by their version."""
        from app.startup import load_model
        if version not in self._slots:
            record = next((r for r in self.model_versions() if r.name == version), None)
            if record is None or not record.path or not Path(record.path).is_file():
                raise StudioError(f"model version {version!r} has no weights file to load")
            slot = load_model(Path(record.path), self.model.preset, str(self.model.device))
            if slot.version != version:
                raise StudioError(f"{record.path} is now {slot.version}, not {version}: the file changed")
            self._slots[version] = slot
        self._slots.setdefault(self.model.version, ModelSlot(
            self.model.predictor, self.model.version, self.model.description,
            weights=self.model.weights, preset=self.model.preset, model=self.model.model))
        self.model.swap(self._slots[version])
        self.store.set_active_model_version(self.dataset_id, version)
        self.sync_categories()

    # ------------------------------------------------------------------------------- instances

    def instances(self, image_id: int, revision: int | None = None) -> list[Instance]:
        """Every annotation of the image (rejected ones included), decoded, cached per revision."""
        revision = self.image(image_id).revision if revision is None else revision

        def load() -> list[Instance]:
            names = self.class_names_by_id()
            records = self.store.annotations(image_id, include_rejected=True)
            known = self.masks_cache.get(image_id) or {}
            masks = {}
            for r in records:
                key = (r.id, r.rle_counts)
                masks[key] = known[key] if key in known else r.mask
            self.masks_cache.put(image_id, masks)
            return [Instance(id=r.id, mask=masks[(r.id, r.rle_counts)], category_id=r.category_id,
                             class_name=names.get(r.category_id, str(r.category_id)), score=r.score,
                             source=r.source, state=r.state, query=self._query_of(r, image_id, names),
                             model_version=r.model_version, bbox=tuple(int(round(v)) for v in r.bbox),
                             area=int(r.area), placed_at=_placed_at(r.extra))
                    for r in records]
        return self.instances_cache.get_or_create((image_id, revision), load)

    def place_query(self, image_id: int, x: int, y: int, expected_revision: int | None,
                    twin: Callable[[np.ndarray], Instance | None] = lambda mask: None) -> tuple[int, str]:
        """A query placed at image pixel ``(x, y)``: the model's mask and class there, stored as a
        proposal of the current model version (see ``Store.place_proposal``). A click inside an
        undecided placed proposal re-places that one (it is replaced, in one undo step); nothing a
        person decided changes; a mask for which ``twin(mask)`` names an instance (a near-duplicate
        of an object a person decided) is not stored: that instance's id is returned. Returns
        (annotation id, what happened).

        Raises StudioError: the image is reviewed, the point is outside it, the model has no point
        queries (QueryInst), or the model finds no mask there (nothing is stored then).
        """
        entry = self.image(image_id)
        if entry.review_state == "reviewed":
            raise StudioError("this image is reviewed: press Reopen before placing queries on it")
        if not (0 <= x < entry.width and 0 <= y < entry.height):
            raise StudioError(f"({x}, {y}) is outside {entry.file_name} ({entry.width}x{entry.height})")
        if not hasattr(self.model.predictor, "place_queries"):   # FastInst's queries are image positions
            raise StudioError(f"the query tool needs a FastInst model; {self.model.description} has learned "
                              f"proposal boxes, not point queries")
        version = self.model.version
        pred = self.model.run(lambda p: p.place_queries(self.pixels(image_id), [(x, y)]))
        if not pred.masks[0].any():
            raise StudioError(f"no mask from a query at ({x}, {y}): the model sees background there")
        name = pred.class_names[int(pred.classes[0])]
        same = twin(pred.masks[0])
        if same is not None:
            return same.id, (f"the query at ({x}, {y}) finds #{same.id} {same.class_name} again (accepted): "
                             f"selected it instead of adding a copy")
        replaced = next((i for i in self.instances(image_id, expected_revision)
                         if i.placed_at is not None and i.state == "proposed" and i.mask[y, x]), None)
        old = None if replaced is None else replaced.id
        ann_id = self.edit(image_id, expected_revision, lambda rev: self.store.place_proposal(
            image_id, pred.masks[0], self.category_id(name), float(pred.scores[0]), version, (x, y),
            replaces=old, expected_revision=rev))
        verb = f"re-placed #{old} as" if old is not None else "placed a query:"
        return ann_id, f"{verb} #{ann_id} {name} {float(pred.scores[0]):.2f} ({int(pred.masks[0].sum())} px)"

    # ----------------------------------------------------------------------------------- edits

    def edit(self, image_id: int, expected_revision: int | None, change: Callable[[int | None], Any]) -> Any:
        """Run one store edit with the revision the session last saw; a concurrent change by
        someone else becomes a StudioError telling the person to look again."""
        try:
            return change(expected_revision)
        except ConflictError as e:
            raise StudioError(str(e)) from None

    def add_instance(self, image_id: int, mask: np.ndarray, category: int | str,
                     expected_revision: int | None) -> int:
        """Store a hand-drawn instance (accepted, source human) of ``category`` (a COCO id, or the
        name of a class made with it, :meth:`label_class`); returns its id."""
        if not mask.any():
            raise StudioError("the new mask is empty: draw something first")
        return self.edit(image_id, expected_revision, lambda rev: self.store.add_annotation(
            image_id, mask, category, source="human", expected_revision=rev))

    # --------------------------------------------------------------------------------- classes

    def class_usage(self) -> list[tuple[int, str, int]]:
        """(COCO id, name, annotations carrying it) of every class, in id order."""
        counts = self.store.category_usage(self.dataset_id)
        return [(cid, name, counts.get(cid, 0)) for cid, name in self.categories()]

    def class_named(self, name: str, change: str | None = None) -> int:
        """The COCO id of an existing class (case and spacing aside); StudioError naming it
        otherwise, or when ``change`` ("renamed", "merged away", "deleted") would take a name the
        model predicts away from it (its predictions are stored under that name)."""
        cid, new = self.label_class(name)
        if new:
            raise StudioError(f"there is no class called {name.strip()!r}")
        known = self.class_names_by_id()[int(cid)]
        if change and known in self.model.predictor.class_names:
            raise StudioError(f"{known!r} is a class the model predicts: it cannot be {change} (merge other "
                              f"classes into it instead)")
        return int(cid)

    def rename_class(self, name: str, new_name: str) -> str:
        """Rename a class; returns what happened. StudioError: unknown class, empty or taken name."""
        cid = self.class_named(name, "renamed")
        try:
            old = self.store.rename_category(self.dataset_id, cid, new_name)
        except InvalidInputError as e:
            raise StudioError(str(e)) from None
        self.instances_cache.discard(lambda key: True)
        return f"renamed class {old!r} to {' '.join(new_name.split())!r}"

    def merge_class(self, name: str, into: str) -> str:
        """Give every annotation of class ``name`` the class ``into`` and remove ``name`` (one
        undo step per image it changes). StudioError: unknown classes, or the same one twice."""
        source, target = self.class_named(name, "merged away"), self.class_named(into)
        names = self.class_names_by_id()
        try:
            changed = self.store.merge_categories(self.dataset_id, source, target)
        except InvalidInputError as e:
            raise StudioError(str(e)) from None
        self.instances_cache.discard(lambda key: True)
        moved = sum(len(ids) for ids in changed.values())
        return (f"merged class {names[source]!r} into {names[target]!r}: {moved} annotations on "
                f"{len(changed)} images changed class (undo on an image takes its part back)")

    def delete_class(self, name: str) -> str:
        """Remove a class nothing carries. StudioError naming what uses it otherwise."""
        cid = self.class_named(name, "deleted")
        try:
            removed = self.store.remove_unused_category(self.dataset_id, cid)
        except InvalidInputError as e:
            raise StudioError(str(e)) from None
        return f"deleted class {removed!r}"

    # ----------------------------------------------------------------------------- adding images

    def add_uploads(self, paths: list[Path], progress: Callable[[int, int, str], None] | None = None,
                    folder: str = UPLOAD_FOLDER) -> UploadReport:
        """Add uploaded image files (and the images inside uploaded .zip files) to the project.

        Files go to ``<image root>/<folder>/`` under their own names, a zip's entries under their
        paths in the zip (``name-2`` ... when taken, never overwriting), so a COCO file naming them
        as the photos were named finds them (``annotations.coco_parse.file_locator`` looks in
        ``uploads/``); a file whose SHA-256 equals an image the project already has (or an
        earlier file of the same upload) is skipped; a file the image loader cannot read is
        skipped with the reason. ``progress(done, total, name)`` is called after each file.
        """
        if not paths:
            raise StudioError("choose image files or a .zip of images first")
        root = self.store.dataset(self.dataset_id).image_root
        known = {r.content_hash: r.file_name for r in self.store.list_images(self.dataset_id) if r.content_hash}
        report = UploadReport([], [], [], [])
        items = list(uploaded_items(paths, report.not_images))
        for done, (name, data) in enumerate(items, 1):
            digest = hashlib.sha256(data).hexdigest()
            if digest in known:
                report.duplicates.append(f"{name} (same content as {known[digest]})")
            else:
                path = write_new_file(root / folder, name, data)
                try:
                    height, width = read_pixels(path).shape[:2]
                except StudioError as e:
                    path.unlink()
                    report.unreadable.append(f"{name}: {e}")
                else:
                    rel = path.relative_to(root).as_posix()
                    self.store.add_image(self.dataset_id, rel, width, height)
                    known[digest] = rel
                    report.added.append(rel)
            if progress is not None:
                progress(done, len(items), name)
        return report

    # ------------------------------------------------------------------------------------ COCO

    def import_coco(self, json_path: Path, image_root: Path | None = None, *, strict: bool = False) -> str:
        """Import a COCO file (e.g. an upload) into this dataset through the one COCO reader:
        images matched by file name, categories by name, fresh annotation ids; every repair and
        refusal is listed by the file's own ids and the file's own name. Returns the report,
        one line per finding (Markdown-safe)."""
        report = self.store.import_coco(self.dataset_id, json_path, image_root, strict=strict,
                                        match_by_name=True, display_name=Path(json_path).name)
        self.instances_cache.discard(lambda key: True)
        return "\n".join(report.lines())

    def undecided_images(self) -> list[int]:
        """Ids of the images that hold undecided proposals (never reviewed ones: the store refuses)."""
        return [e.id for e in self.images() if e.review_state != "reviewed"
                and any(i.state == "proposed" for i in self.instances(e.id, e.revision))]

    def export_coco(self, only_reviewed: bool = True, repaired: list[str] | None = None) -> Path:
        """Write the accepted annotations (of reviewed images only, by default) as COCO JSON, to
        ``<work dir>/exports/<project name>-<dataset id>.reviewed.json`` (or ``.all_images.json``):
        one file per project, so the projects of one data folder never overwrite each other's.
        ``repaired`` gets a line per value written as null (see :meth:`Store.export_coco`)."""
        name = re.sub(r"[^\w.-]+", "_", self.store.dataset(self.dataset_id).name).strip("_.") or "project"
        kind = "reviewed" if only_reviewed else "all_images"
        out = self.work_dir / "exports" / f"{name}-{self.dataset_id}.{kind}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        return self.store.export_coco(self.dataset_id, out, only_reviewed=only_reviewed, repaired=repaired)


def _placed_at(extra: dict[str, Any] | None) -> tuple[int, int] | None:
    """The ``(x, y)`` a stored annotation's query was placed at (``extra["placed_query"]``)."""
    point = (extra or {}).get("placed_query")
    return (int(point[0]), int(point[1])) if point else None


@dataclass
class UploadReport:
    """What adding images from the browser did, file by file."""

    added: list[str]
    duplicates: list[str]     # "name (same content as existing)"
    unreadable: list[str]     # "name: reason"
    not_images: list[str]     # "archive.zip: entry" (zip entries that are not image files)

    def summary(self) -> str:
        """One line for the status, naming what was skipped and why."""
        text = f"added {len(self.added)} images"
        if self.duplicates:
            text += f"; skipped {len(self.duplicates)} exact duplicates: " + ", ".join(self.duplicates[:5])
        if self.unreadable:
            text += f"; skipped {len(self.unreadable)} unreadable: " + "; ".join(self.unreadable[:5])
        if self.not_images:
            text += (f"; skipped {len(self.not_images)} zip entries that are not images: "
                     + ", ".join(self.not_images[:5]))
        return text


def uploaded_items(paths: list[Path], not_images: list[str]) -> Iterator[tuple[str, bytes]]:
    """(file name, bytes) of every uploaded image: files as they are, and the image files inside
    .zip archives under their paths in the archive (``..``, ``.`` and empty parts dropped, so
    nothing is written outside the folder).
    Other zip entries are appended to ``not_images`` as "archive.zip: entry" (folders, hidden
    files and macOS ``__MACOSX`` metadata are passed over without a word)."""
    import zipfile
    for path in paths:
        if path.suffix.lower() == ".zip":
            try:
                archive = zipfile.ZipFile(path)
            except zipfile.BadZipFile as e:
                raise StudioError(f"{path.name}: not a readable zip archive ({e})") from None
            with archive:
                for info in archive.infolist():
                    parts = [p for p in PurePosixPath(info.filename.replace("\\", "/")).parts
                             if p not in ("", ".", "..", "/")]
                    name = parts[-1] if parts else ""
                    if info.is_dir() or not name or name.startswith(".") or "__MACOSX" in info.filename:
                        continue
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        yield "/".join(parts), archive.read(info)
                    else:
                        not_images.append(f"{path.name}: {info.filename}")
        else:
            yield path.name, path.read_bytes()


def write_new_file(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` as ``folder/name`` (``name`` may hold sub-folders, made as needed), or
    ``name-2``, ``name-3`` ... when taken: an existing file is never overwritten (exclusive
    create). The name keeps its case (``IMG_0001.JPG`` stays as the camera wrote it)."""
    target = folder / name
    target.parent.mkdir(parents=True, exist_ok=True)
    stem, suffix = target.stem or "image", target.suffix
    for n in itertools.count(1):
        path = target.parent / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")
        try:
            with open(path, "xb") as f:
                f.write(data)
            return path
        except FileExistsError:
            continue
    raise AssertionError("unreachable")


def find_moved_dataset(store: Store, image_root: Path, sample: int = 20) -> DatasetRecord | None:
    """The project whose image folder is gone and whose images are in ``image_root`` (the folder
    was moved or renamed): of its first ``sample`` images at least half exist there under the same
    names, all of those with the same SHA-256 where the store knows it (the others are named at
    launch). None when a project is over ``image_root`` already. The one with the most work when
    several fit."""
    from annotations.coco_parse import file_sha256
    root = Path(image_root).resolve()
    datasets = store.list_datasets()
    if any(Path(d.image_root).resolve() == root for d in datasets):
        return None      # the folder has its project (moved here at an earlier launch, or made here)
    fits = []
    for record in datasets:
        if Path(record.image_root).is_dir() or Path(record.image_root).resolve() == root:
            continue
        images = store.list_images(record.id)[:sample]
        here = [i for i in images if (root / i.file_name).is_file()]
        if here and 2 * len(here) >= len(images) and all(
                not i.content_hash or file_sha256(root / i.file_name) == i.content_hash for i in here):
            fits.append(record)
    return min(fits, key=lambda d: (-d.num_reviewed, -d.num_accepted, -d.num_annotations, d.id), default=None)


def find_or_create_dataset(store: Store, name: str, image_root: Path, *,
                           by_folder: bool = False) -> tuple[int, bool, list[str]]:
    """The dataset to open: the one called ``name``; with ``by_folder`` (no COCO file names the
    project) first the one over ``image_root`` holding the most of a person's work (reviewed
    images, then accepted annotations, then any annotations: a project where someone only looked
    at the model's proposals holds none), so launching again on a folder without ``--coco`` opens
    the work done there. Created (as ``name``) if none fits.

    Returns ``(dataset id, created, names of the other datasets over the same folder)``.
    """
    datasets = store.list_datasets()
    root = Path(image_root).resolve()
    over = sorted((d for d in datasets if Path(d.image_root).resolve() == root),
                  key=lambda d: (-d.num_reviewed, -d.num_accepted, -d.num_annotations, d.id))
    if by_folder and over:
        return over[0].id, False, [d.name for d in over[1:]]
    for record in datasets:
        if record.name == name:
            return record.id, False, [d.name for d in over if d.id != record.id]
    return store.create_dataset(name, image_root), True, [d.name for d in over]


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, as paths relative to it."""
    return sorted(p.relative_to(folder) for p in folder.rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def add_folder_images(store: Store, dataset_id: int, folder: Path) -> tuple[int, list[str]]:
    """Add the folder's images that the dataset does not have yet, each decoded fully once
    (:func:`fastinst.images.decoded_size`). Returns (added, skipped messages) — unreadable,
    truncated or corrupt files are skipped with the reason, never abort the import."""
    known = {normal_file_name(r.file_name) for r in store.list_images(dataset_id)}   # ./a.png is a.png
    added, skipped = 0, []
    for rel in image_files(folder):
        name = rel.as_posix()
        if name in known:
            continue
        try:
            width, height = decoded_size(folder / rel)
        except ImageError as e:  # unreadable, truncated or over the pixel limit: reported and skipped
            skipped.append(f"{name}: {e}")
            continue
        store.add_image(dataset_id, name, width, height)
        added += 1
    return added, skipped
