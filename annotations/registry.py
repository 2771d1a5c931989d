"""Model versions, training runs, their curves and the fixed train / validation / test split.

A training run is a row that the studio creates and a worker process updates (status, iteration,
heartbeat, curves), so every process and browser reading the store sees the same run. Model
versions form a lineage: each records the version it was fine-tuned from and the content hash of
the exact annotation set it was trained on.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any, Iterable, Mapping

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

from annotations.database import read_session, write_session
from annotations.errors import InvalidInputError, NotFoundError
from annotations.records import ModelVersionRecord, TrainingMetricRecord, TrainingRunRecord
from annotations.schema import (
    RUN_STATUSES,
    SPLITS,
    Dataset,
    Image,
    ImageSplit,
    ModelVersion,
    TrainingMetric,
    TrainingRun,
    utc_now,
)

RUN_FIELDS = frozenset({"status", "iteration", "max_iters", "message", "report", "worker_pid", "worker_host",
                        "heartbeat_at", "model_version", "metrics", "path", "config", "dataset_revision"})


def _path(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(path)


def _version_record(r: ModelVersion) -> ModelVersionRecord:
    return ModelVersionRecord(r.id, r.name, r.path, r.metrics, r.created_at, r.parent, r.dataset_revision,
                              r.run_id)


def _run_record(r: TrainingRun) -> TrainingRunRecord:
    return TrainingRunRecord(r.id, r.name, r.dataset_id, r.model_version, r.path, r.config, r.metrics,
                             r.created_at, r.status, r.parent_version, r.dataset_revision, r.iteration,
                             r.max_iters, r.message, r.report, r.worker_pid, r.worker_host, r.heartbeat_at,
                             r.updated_at)


def record_model_version(
    engine: Engine, name: str, path: str | os.PathLike[str] | None = None,
    metrics: dict[str, Any] | None = None, *, parent: str | None = None,
    dataset_revision: str | None = None, run_id: int | None = None,
) -> int:
    """Register a model version under a unique name; returns its id.

    Raises:
        InvalidInputError: a version with this name exists.
    """
    try:
        with write_session(engine) as session:
            row = ModelVersion(name=name, path=_path(path), metrics=metrics, parent=parent,
                               dataset_revision=dataset_revision, run_id=run_id)
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError as error:
        raise InvalidInputError(f"model version '{name}' is already recorded") from error


def list_model_versions(engine: Engine) -> list[ModelVersionRecord]:
    """Registered model versions, oldest first."""
    with read_session(engine) as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id))
        return [_version_record(r) for r in rows]


def model_version(engine: Engine, name: str) -> ModelVersionRecord | None:
    """The version called ``name``, or None."""
    with read_session(engine) as session:
        row = session.scalar(select(ModelVersion).where(ModelVersion.name == name))
        return None if row is None else _version_record(row)


def set_active_model_version(engine: Engine, dataset_id: int, name: str) -> None:
    """Make the recorded version ``name`` the one the dataset's studio predicts with.

    Raises:
        NotFoundError: no such dataset or no model version of that name.
    """
    with write_session(engine) as session:
        dataset = session.get(Dataset, dataset_id)
        if dataset is None:
            raise NotFoundError(f"dataset {dataset_id} does not exist")
        if session.scalar(select(ModelVersion.id).where(ModelVersion.name == name)) is None:
            raise NotFoundError(f"model version '{name}' is not recorded")
        dataset.active_model_version = name


def active_model_version(engine: Engine, dataset_id: int) -> ModelVersionRecord | None:
    """The model version the dataset's studio last chose, or None."""
    with read_session(engine) as session:
        row = session.execute(
            select(ModelVersion).join(Dataset, Dataset.active_model_version == ModelVersion.name)
            .where(Dataset.id == dataset_id)
        ).scalar_one_or_none()
        return None if row is None else _version_record(row)


def record_training_run(
    engine: Engine, name: str, *, dataset_id: int | None = None,
    model_version: str | None = None, path: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
    parent_version: str | None = None, dataset_revision: str | None = None,
    max_iters: int | None = None, report: dict[str, Any] | None = None, status: str = "created",
) -> int:
    """Record a training run (status ``created`` until a worker picks it up); returns its id."""
    if status not in RUN_STATUSES:
        raise InvalidInputError(f"unknown run status {status!r}; expected one of {RUN_STATUSES}")
    with write_session(engine) as session:
        row = TrainingRun(name=name, dataset_id=dataset_id, model_version=model_version,
                          path=_path(path), config=config, metrics=metrics, status=status,
                          parent_version=parent_version, dataset_revision=dataset_revision,
                          max_iters=max_iters, report=report, iteration=0, updated_at=utc_now())
        session.add(row)
        session.flush()
        return row.id


def list_training_runs(engine: Engine, dataset_id: int | None = None) -> list[TrainingRunRecord]:
    """Recorded training runs (of one dataset, if given), oldest first."""
    with read_session(engine) as session:
        query = select(TrainingRun).order_by(TrainingRun.id)
        if dataset_id is not None:
            query = query.where(TrainingRun.dataset_id == dataset_id)
        return [_run_record(r) for r in session.scalars(query)]


def training_run(engine: Engine, run_id: int) -> TrainingRunRecord:
    """One run. Raises NotFoundError for an unknown id."""
    with read_session(engine) as session:
        row = session.get(TrainingRun, run_id)
        if row is None:
            raise NotFoundError(f"training run {run_id} does not exist")
        return _run_record(row)


def update_training_run(engine: Engine, run_id: int, *, expect_status: Iterable[str] | None = None,
                        **fields: Any) -> bool:
    """Change some fields of a run (names in RUN_FIELDS; ``report`` is merged key by key).

    With ``expect_status`` the change is made only when the run's status is one of them (checked
    in the same transaction); returns whether it was made.

    Raises:
        InvalidInputError: an unknown field or status.
        NotFoundError: no such run.
    """
    unknown = set(fields) - RUN_FIELDS
    if unknown:
        raise InvalidInputError(f"training runs have no field(s) {sorted(unknown)}")
    if "status" in fields and fields["status"] not in RUN_STATUSES:
        raise InvalidInputError(f"unknown run status {fields['status']!r}; expected one of {RUN_STATUSES}")
    with write_session(engine) as session:
        row = session.get(TrainingRun, run_id)
        if row is None:
            raise NotFoundError(f"training run {run_id} does not exist")
        if expect_status is not None and row.status not in set(expect_status):
            return False
        for key, value in fields.items():
            if key == "report":
                value = {**(row.report or {}), **value}
            setattr(row, key, value)
        row.updated_at = utc_now()
        return True


def add_training_metrics(engine: Engine, run_id: int, points: Iterable[tuple[int, str, Mapping[str, Any]]]) -> None:
    """Append curve points ``(iteration, kind, values)`` to a run, in one transaction."""
    with write_session(engine) as session:
        session.add_all(TrainingMetric(run_id=run_id, iteration=int(it), kind=kind, values=dict(values))
                        for it, kind, values in points)


def training_metrics(engine: Engine, run_id: int, kind: str | None = None) -> list[TrainingMetricRecord]:
    """A run's curve points in iteration order (of one ``kind``, if given)."""
    with read_session(engine) as session:
        query = select(TrainingMetric).where(TrainingMetric.run_id == run_id)
        if kind is not None:
            query = query.where(TrainingMetric.kind == kind)
        rows = session.scalars(query.order_by(TrainingMetric.iteration, TrainingMetric.id))
        return [TrainingMetricRecord(r.iteration, r.kind, r.values, r.created_at) for r in rows]


def drop_training_metrics_after(engine: Engine, run_id: int, iteration: int) -> None:
    """Forget a run's points after ``iteration`` (a resumed run redoes those iterations)."""
    with write_session(engine) as session:
        session.execute(delete(TrainingMetric).where(TrainingMetric.run_id == run_id,
                                                     TrainingMetric.iteration > iteration))


def image_splits(engine: Engine, dataset_id: int) -> dict[int, str]:
    """image id -> "train", "val" or "test" (:mod:`training.split`), for the dataset's images
    that have a split."""
    with read_session(engine) as session:
        rows = session.execute(select(ImageSplit.image_id, ImageSplit.split).join(Image, Image.id == ImageSplit.image_id)
                               .where(Image.dataset_id == dataset_id))
        return {int(i): s for i, s in rows}


def assign_image_splits(engine: Engine, dataset_id: int, choose: Any) -> dict[int, str]:
    """Give every listed image without a split one, never changing an existing assignment.

    ``choose(existing: dict[image id, split]) -> dict[image id, split]`` picks the new ones; it
    runs inside the write transaction, so two processes assigning at once agree. Returns the
    dataset's full mapping.
    """
    with write_session(engine) as session:
        rows = session.execute(select(ImageSplit.image_id, ImageSplit.split).join(Image, Image.id == ImageSplit.image_id)
                               .where(Image.dataset_id == dataset_id))
        existing = {int(i): s for i, s in rows}
        new = {int(i): s for i, s in choose(dict(existing)).items() if int(i) not in existing}
        for image_id, split in new.items():
            if split not in SPLITS:
                raise InvalidInputError(f"image {image_id}: unknown split {split!r}; expected one of {SPLITS}")
            session.add(ImageSplit(image_id=image_id, split=split))
        return {**existing, **new}


def heartbeat_age(record: TrainingRunRecord, now: datetime | None = None) -> float | None:
    """Seconds since the run's worker last reported, or None if it never did."""
    if record.heartbeat_at is None:
        return None
    beat = record.heartbeat_at
    now = now or utc_now()
    if beat.tzinfo is None:  # SQLite returns naive datetimes (stored in UTC)
        now = now.replace(tzinfo=None)
    return (now - beat).total_seconds()
