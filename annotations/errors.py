"""Errors raised by the annotation store.

Every error is an :class:`AnnotationError`, so a caller (the studio app) can catch one type and show
``str(error)`` to the user. Messages name the offending item: the annotation id, the position of the
image in the COCO ``images`` array and its file name, the revision numbers involved.
"""

from __future__ import annotations


class AnnotationError(Exception):
    """Base class of every error of the ``annotations`` package."""


class CocoFormatError(AnnotationError, ValueError):
    """A COCO file (or part of one) is malformed: bad JSON, unknown ids, bad geometry."""


class MissingImageError(AnnotationError, FileNotFoundError):
    """An image named by a COCO file (or by the store) is not on disk."""


class NotFoundError(AnnotationError, LookupError):
    """A dataset, image, category or annotation id that the store does not hold."""


class InvalidInputError(AnnotationError, ValueError):
    """An argument the store cannot accept: an empty mask, a mask of the wrong size, a bad state."""


class UndecidedProposalsError(InvalidInputError):
    """An image cannot be marked reviewed while model proposals on it are still undecided.

    Attributes:
        image_id: the image.
        proposal_ids: the annotation ids of the undecided proposals.
    """

    def __init__(self, image_id: int, file_name: str, proposal_ids: list[int]) -> None:
        self.image_id = image_id
        self.proposal_ids = proposal_ids
        super().__init__(
            f"image {image_id} '{file_name}' has {len(proposal_ids)} undecided proposals: accept "
            f"or reject them before marking it reviewed (an undecided proposal is not 'no object')"
        )


class SchemaVersionError(AnnotationError):
    """The database was written by a newer version of this package (unknown migration revision)."""


class ConflictError(AnnotationError):
    """An edit was based on a stale revision of an image: someone else changed it first.

    Attributes:
        image_id: the image whose revision moved on.
        expected_revision: the revision the caller based its edit on.
        actual_revision: the image's revision in the database now.
        changed_by: who made the most recent change (``None`` if unknown).
        last_action: what the most recent change was, e.g. ``"update_mask annotation 17"``.
    """

    def __init__(
        self,
        *,
        image_id: int,
        file_name: str,
        expected_revision: int,
        actual_revision: int,
        changed_by: str | None,
        last_action: str | None,
        attempted: str,
    ) -> None:
        self.image_id = image_id
        self.expected_revision = expected_revision
        self.actual_revision = actual_revision
        self.changed_by = changed_by
        self.last_action = last_action
        who = changed_by or "another session"
        what = f" ({last_action})" if last_action else ""
        super().__init__(
            f"conflict on image {image_id} '{file_name}': cannot {attempted}, "
            f"{who} changed the image{what}; you expected revision {expected_revision} "
            f"but it is now at revision {actual_revision}. Reload the image and apply your "
            f"change again."
        )
