"""Annotation store: SQLAlchemy database of instance masks with lossless COCO import/export.

See :mod:`annotations.store` for the API the studio uses.
"""

from annotations.coco_import import ImportReport
from annotations.errors import (
    AnnotationError,
    CocoFormatError,
    ConflictError,
    InvalidInputError,
    MissingImageError,
    NotFoundError,
    SchemaVersionError,
    UndecidedProposalsError,
)
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
from annotations.store import Store

__all__ = [
    "AnnotationError",
    "AnnotationRecord",
    "Category",
    "CocoFormatError",
    "ConflictError",
    "DatasetRecord",
    "EditRecord",
    "ImageRecord",
    "ImportReport",
    "InvalidInputError",
    "MissingImageError",
    "ModelVersionRecord",
    "NotFoundError",
    "SchemaVersionError",
    "Store",
    "TrainingMetricRecord",
    "TrainingRunRecord",
    "UndecidedProposalsError",
]
