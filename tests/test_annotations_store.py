"""The store's editing API on SQLite and PostgreSQL: masks, revisions, history, undo/redo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from annotations import (
    AnnotationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    Store,
)

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

H, W = 24, 32


def blob(y0: int, y1: int, x0: int, x1: int, hole: bool = False) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    if hole:
        mask[(y0 + y1) // 2, (x0 + x1) // 2] = False
    return mask


@pytest.fixture
def image(store: Store, tmp_path: Path) -> int:
    """An image of a dataset with categories 3 ('a') and 8 ('b')."""
    dataset = store.create_dataset("d", tmp_path)
    store.add_category(dataset, "a", 3)
    store.add_category(dataset, "b", 8)
    return store.add_image(dataset, "x.png", W, H)


def test_only_a_category_nothing_carries_can_be_removed(store: Store, image: int):
    """A class nothing carries goes; one that an annotation carries stays; one that an undone
    edit could bring back goes, and that edit's redo makes it again (same id and name)."""
    dataset = store.image(image).dataset_id
    fresh = store.add_category(dataset, "bicycle")
    store.remove_unused_category(dataset, fresh)
    assert [c.name for c in store.categories(dataset)] == ["a", "b"]
    with pytest.raises(NotFoundError, match="no category"):
        store.remove_unused_category(dataset, fresh)
    with pytest.raises(InvalidInputError, match="'a' is in use"):
        store.add_annotation(image, blob(2, 9, 3, 12), 3) and store.remove_unused_category(dataset, 3)
    undone = store.add_category(dataset, "car")
    ann = store.add_annotation(image, blob(10, 20, 3, 12), undone)
    store.undo(image)                                   # the annotation is gone, its edit can be redone
    assert all(a.id != ann for a in store.annotations(image, include_rejected=True))
    assert store.remove_unused_category(dataset, undone) == "car"
    assert "car" not in [c.name for c in store.categories(dataset)]
    store.redo(image)
    assert store.annotation(ann).category_id == undone and "car" in [c.name for c in store.categories(dataset)]
    store.undo(image)                                   # nothing carries it again: it goes with the undo
    assert "car" not in [c.name for c in store.categories(dataset)]


def state_of(store: Store, image_id: int) -> list[tuple]:
    """Everything the UI shows of an image's annotations."""
    return [
        (a.id, a.category_id, a.rle_counts, a.source, a.state, a.score)
        for a in store.annotations(image_id, include_rejected=True)
    ] + [store.image(image_id).review_state]


def test_datasets_images_and_categories(store: Store, tmp_path: Path):
    dataset = store.create_dataset("shapes", tmp_path)
    assert store.add_category(dataset, "circle") == 1
    assert store.add_category(dataset, "square", 7, supercategory="shape") == 7
    assert store.add_category(dataset, "star") == 8  # never reuses or collides
    assert [(c.id, c.name) for c in store.categories(dataset)] == [
        (1, "circle"), (7, "square"), (8, "star")]
    (tmp_path / "pic.png").write_bytes(b"not really a png")
    image_id = store.add_image(dataset, "pic.png", 40, 30)
    record = store.image(image_id)
    assert (record.file_name, record.width, record.height, record.revision) == ("pic.png", 40, 30, 0)
    assert record.review_state == "unreviewed" and record.content_hash is not None
    assert store.image_path(image_id) == tmp_path.resolve() / "pic.png"
    assert [i.id for i in store.list_images(dataset)] == [image_id]
    [listed] = store.list_datasets()
    assert (listed.name, listed.num_images, listed.num_annotations) == ("shapes", 1, 0)
    with pytest.raises(InvalidInputError, match="already exists"):
        store.create_dataset("shapes", tmp_path)
    with pytest.raises(InvalidInputError, match="already in dataset"):
        store.add_image(dataset, "pic.png", 40, 30)
    with pytest.raises(InvalidInputError, match="categories id 7 is already used"):
        store.add_category(dataset, "dup", 7)
    with pytest.raises(NotFoundError, match="dataset 999"):
        store.list_images(999)


def test_masks_round_trip_with_pycocotools_area_and_bbox(store: Store, image: int):
    mask = blob(2, 10, 4, 20, hole=True)
    ann_id = store.add_annotation(image, mask, 3)
    [record] = store.annotations(image)
    assert record.id == ann_id and np.array_equal(record.mask, mask)
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    assert record.area == int(coco_mask.area(encoded)) == mask.sum()
    assert list(record.bbox) == coco_mask.toBbox(encoded).tolist() == [4.0, 2.0, 16.0, 8.0]
    assert (record.source, record.state, record.category_id) == ("human", "accepted", 3)
    store.update_mask(ann_id, blob(0, 5, 0, 5))
    updated = store.annotation(ann_id)
    assert updated.area == 25 and list(updated.bbox) == [0.0, 0.0, 5.0, 5.0]


def test_bad_edit_arguments_are_rejected(store: Store, image: int):
    with pytest.raises(InvalidInputError, match=r"mask has shape \(10, 10\)"):
        store.add_annotation(image, np.ones((10, 10), bool), 3)
    with pytest.raises(InvalidInputError, match="mask is empty"):
        store.add_annotation(image, np.zeros((H, W), bool), 3)
    with pytest.raises(NotFoundError, match="category id 5 is not a category"):
        store.add_annotation(image, blob(0, 3, 0, 3), 5)
    with pytest.raises(NotFoundError, match="annotation 12345 does not exist"):
        store.set_state(12345, "accepted")
    ann_id = store.add_annotation(image, blob(0, 3, 0, 3), 3)
    with pytest.raises(InvalidInputError, match="state must be one of"):
        store.set_state(ann_id, "maybe")
    with pytest.raises(NotFoundError, match="image 777"):
        store.set_review_state(777, "reviewed")
    assert store.image(image).revision == 1  # failed calls changed nothing
    assert isinstance(NotFoundError("x"), AnnotationError)


def test_every_edit_moves_the_revision_and_is_recorded(store: Store, image: int):
    a = store.add_annotation(image, blob(0, 4, 0, 4), 3, user="ann")
    store.update_mask(a, blob(0, 6, 0, 6), user="bob")
    store.set_category(a, 8)
    store.set_state(a, "rejected")
    store.set_review_state(image, "in_progress")
    store.delete_annotation(a)
    store.replace_predictions(image, blob(1, 2, 1, 2)[None], [3], [0.5], "m1")
    history = store.history(image)
    assert [e.action for e in history] == [
        "add_annotation", "update_mask", "set_category", "set_state", "set_review_state",
        "delete_annotation", "replace_predictions"]
    assert [e.revision for e in history] == list(range(1, 8))
    assert store.image(image).revision == 7
    assert [e.user for e in history[:3]] == ["ann", "bob", "tester"]
    assert all(e.status == "applied" for e in history)


def test_undo_redo_walks_back_and_forth_exactly(store: Store, image: int):
    states = [state_of(store, image)]
    a = store.add_annotation(image, blob(0, 4, 0, 4), 3)
    states.append(state_of(store, image))
    b = store.add_annotation(image, blob(10, 20, 10, 30, hole=True), 8)
    states.append(state_of(store, image))
    store.update_mask(a, blob(2, 9, 2, 9))
    states.append(state_of(store, image))
    store.set_category(b, 3)
    states.append(state_of(store, image))
    store.set_state(a, "rejected")
    states.append(state_of(store, image))
    store.delete_annotation(b)
    states.append(state_of(store, image))
    store.set_review_state(image, "reviewed")
    states.append(state_of(store, image))
    for expected in reversed(states[:-1]):
        assert store.undo(image)
        assert state_of(store, image) == expected
    assert not store.undo(image)
    for expected in states[1:]:
        assert store.redo(image)
        assert state_of(store, image) == expected
    assert not store.redo(image)


def test_new_edit_discards_the_redo_branch(store: Store, image: int):
    a = store.add_annotation(image, blob(0, 4, 0, 4), 3)
    store.update_mask(a, blob(0, 8, 0, 8))
    assert store.undo(image)
    store.set_category(a, 8)
    assert not store.redo(image)
    assert [e.status for e in store.history(image)] == ["applied", "discarded", "applied"]
    assert store.undo(image) and store.undo(image)
    assert store.annotations(image) == []
    assert store.redo(image)
    assert store.annotation(a).area == 16  # the discarded update stays discarded


def test_undo_of_delete_restores_the_same_ids(store: Store, image: int, tmp_path: Path):
    a = store.add_annotation(image, blob(0, 4, 0, 4), 3)
    before = store.annotation(a)
    store.delete_annotation(a)
    later = store.add_annotation(image, blob(5, 9, 5, 9), 3)
    assert later != a  # ids are never reused
    assert store.undo(image) and store.undo(image)
    assert [r.id for r in store.annotations(image)] == [a]
    assert store.annotation(a).coco_id == before.coco_id


def test_replace_predictions_keeps_human_work(store: Store, image: int):
    human = store.add_annotation(image, blob(0, 3, 0, 3), 3)
    first = store.replace_predictions(
        image, np.stack([blob(5, 9, 5, 9), blob(10, 12, 0, 30), np.zeros((H, W), bool)]),
        [3, 8, 3], [0.9, 0.7, 0.2], "m1")
    assert first[2] is None  # empty masks are not stored
    accepted, edited = first[0], first[1]
    store.set_state(accepted, "accepted")
    store.update_mask(edited, blob(10, 13, 0, 30))  # a person fixed it: it becomes theirs
    more = store.replace_predictions(image, np.stack([blob(20, 22, 20, 22)]), [8], [0.6], "m2")
    rejected = more[0]
    store.set_state(rejected, "rejected")
    latest = store.replace_predictions(image, np.stack([blob(1, 2, 20, 30)]), [3], [0.3], "m3")
    by_id = {r.id: r for r in store.annotations(image, include_rejected=True)}
    assert set(by_id) == {human, accepted, edited, rejected, latest[0]}
    assert (by_id[edited].source, by_id[edited].state) == ("human", "accepted")
    assert by_id[latest[0]].model_version == "m3" and by_id[latest[0]].score == 0.3
    assert rejected not in {r.id for r in store.annotations(image)}
    assert store.undo(image)  # removes m3's proposal; m2's was rejected, so it was never replaced
    assert latest[0] not in {r.id for r in store.annotations(image, include_rejected=True)}


def test_replace_predictions_validates_its_arguments(store: Store, image: int):
    with pytest.raises(InvalidInputError, match="need \\(N, H, W\\) masks and N of each"):
        store.replace_predictions(image, np.stack([blob(0, 2, 0, 2)]), [3, 3], [0.5], "m")
    with pytest.raises(InvalidInputError, match="masks are \\(4, 4\\)"):
        store.replace_predictions(image, np.ones((1, 4, 4), bool), [3], [0.5], "m")
    with pytest.raises(NotFoundError, match="category id 4"):
        store.replace_predictions(image, np.stack([blob(0, 2, 0, 2)]), [4], [0.5], "m")
    assert store.replace_predictions(image, np.zeros((0, H, W), bool), [], [], "m") == []
    assert store.image(image).revision == 1


def test_stale_revision_raises_a_clear_conflict(store: Store, image: int):
    ann = store.add_annotation(image, blob(0, 4, 0, 4), 3)
    seen = store.image(image).revision
    store.update_mask(ann, blob(0, 6, 0, 6), expected_revision=seen, user="alice")
    with pytest.raises(ConflictError) as caught:
        store.set_category(ann, 8, expected_revision=seen, user="bob")
    error = caught.value
    assert (error.expected_revision, error.actual_revision, error.changed_by) == (
        seen, seen + 1, "alice")
    assert str(error) == (
        f"conflict on image {image} 'x.png': cannot set_category on annotation {ann}, alice "
        f"changed the image (update_mask on annotation {ann}); you expected revision {seen} but "
        f"it is now at revision {seen + 1}. Reload the image and apply your change again.")
    assert store.annotation(ann).category_id == 3 and store.annotation(ann).area == 36
    for call in (lambda: store.undo(image, expected_revision=seen),
                 lambda: store.set_review_state(image, "reviewed", expected_revision=seen),
                 lambda: store.add_annotation(image, blob(0, 1, 0, 1), 3, expected_revision=seen),
                 lambda: store.replace_predictions(image, blob(0, 1, 0, 1)[None], [3], [1.0],
                                                   "m", expected_revision=seen)):
        with pytest.raises(ConflictError):
            call()
    assert store.image(image).revision == seen + 1


def test_model_versions_and_training_runs(store: Store, tmp_path: Path):
    dataset = store.create_dataset("d", tmp_path)
    first = store.record_model_version("tiny-v1", tmp_path / "a.safetensors", {"AP": 31.5})
    with pytest.raises(InvalidInputError, match="already recorded"):
        store.record_model_version("tiny-v1")
    run = store.record_training_run("ft-1", dataset_id=dataset, model_version="tiny-v1",
                                    config={"lr": 1e-4}, metrics={"loss": [3.0, 2.5]})
    [version] = store.list_model_versions()
    assert (version.id, version.name, version.metrics) == (first, "tiny-v1", {"AP": 31.5})
    [recorded] = store.list_training_runs()
    assert (recorded.id, recorded.dataset_id, recorded.config) == (run, dataset, {"lr": 1e-4})
    assert recorded.metrics == {"loss": [3.0, 2.5]} and recorded.created_at is not None
