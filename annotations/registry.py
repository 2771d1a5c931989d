"""Model versions and training runs: simple rows the studio records and lists."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from annotations.database import read_session, write_session
from annotations.errors import InvalidInputError, NotFoundError
from annotations.records import ModelVersionRecord, TrainingRunRecord
from annotations.schema import Dataset, ModelVersion, TrainingRun


def _path(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else str(path)


def record_model_version(
    engine: Engine, name: str, path: str | os.PathLike[str] | None = None,
    metrics: dict[str, Any] | None = None,
) -> int:
    """Register a model version under a unique name; returns its id."""
    try:
        with write_session(engine) as session:
            row = ModelVersion(name=name, path=_path(path), metrics=metrics)
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError as error:
        raise InvalidInputError(f"model version '{name}' is already recorded") from error


def list_model_versions(engine: Engine) -> list[ModelVersionRecord]:
    """Registered model versions, oldest first."""
    with read_session(engine) as session:
        rows = session.scalars(select(ModelVersion).order_by(ModelVersion.id))
        return [ModelVersionRecord(r.id, r.name, r.path, r.metrics, r.created_at) for r in rows]


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
        return None if row is None else ModelVersionRecord(row.id, row.name, row.path, row.metrics,
                                                           row.created_at)


def record_training_run(
    engine: Engine, name: str, *, dataset_id: int | None = None,
    model_version: str | None = None, path: str | os.PathLike[str] | None = None,
    config: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
) -> int:
    """Record a training run; returns its id."""
    with write_session(engine) as session:
        row = TrainingRun(name=name, dataset_id=dataset_id, model_version=model_version,
                          path=_path(path), config=config, metrics=metrics)
        session.add(row)
        session.flush()
        return row.id


def list_training_runs(engine: Engine) -> list[TrainingRunRecord]:
    """Recorded training runs, oldest first."""
    with read_session(engine) as session:
        rows = session.scalars(select(TrainingRun).order_by(TrainingRun.id))
        return [TrainingRunRecord(r.id, r.name, r.dataset_id, r.model_version, r.path, r.config,
                                  r.metrics, r.created_at) for r in rows]
