"""Review states, predict-again and bulk edits on SQLite and PostgreSQL: what a person decided is
never duplicated, an undecided proposal is never read as "no object", one action is one undo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from annotations import InvalidInputError, Store, UndecidedProposalsError
from test_annotations_store import blob, image, state_of  # noqa: F401 - fixture

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Mask IoU by pycocotools (the oracle, not the store's own code path)."""
    ea, eb = (coco_mask.encode(np.asfortranarray(m.astype(np.uint8))) for m in (a, b))
    return float(coco_mask.iou([ea], [eb], [0])[0, 0])


def test_predict_again_never_duplicates_decided_work(store: Store, image: int):
    square, bar, dot, new = blob(2, 10, 2, 10), blob(12, 15, 0, 30), blob(18, 22, 26, 30), blob(18, 22, 2, 6)
    masks = np.stack([square, bar, dot])
    first = store.replace_predictions(image, masks, [3, 8, 3], [0.9, 0.8, 0.7], "m1")
    store.set_state(first[0], "accepted")
    store.update_mask(first[1], blob(12, 16, 0, 30))   # edited: now the person's
    store.set_state(first[2], "rejected")
    again = store.replace_predictions(image, np.stack([square, bar, dot, new]), [3, 3, 3, 8],
                                      [0.95, 0.9, 0.6, 0.5], "m1")
    assert again[:3] == [None, None, None] and again[3] is not None
    kept = store.annotations(image)
    for i, a in enumerate(kept):
        for b in kept[i + 1:]:
            assert iou(a.mask, b.mask) <= 0.9, (a.id, b.id)
    assert "0 undecided proposals replaced by 1; 3 matched" in store.history(image)[-1].summary
    third = store.replace_predictions(image, np.stack([new]), [8], [0.4], "m2")
    assert "1 undecided proposals replaced by 1; 0 matched" in store.history(image)[-1].summary
    assert {a.id for a in store.annotations(image) if a.state == "proposed"} == {third[0]}


def test_mark_reviewed_asks_about_undecided_proposals(store: Store, image: int):
    ids = store.replace_predictions(image, np.stack([blob(0, 4, 0, 4), blob(10, 14, 10, 14)]),
                                    [3, 8], [0.9, 0.3], "m1")
    before = state_of(store, image)
    with pytest.raises(UndecidedProposalsError, match="2 undecided proposals") as info:
        store.set_review_state(image, "reviewed")
    assert info.value.proposal_ids == ids and state_of(store, image) == before
    assert store.set_review_state(image, "reviewed", undecided="accept", min_score=0.5) == {
        "accepted": 1, "rejected": 1}
    states = {a.id: a.state for a in store.annotations(image, include_rejected=True)}
    assert states == {ids[0]: "accepted", ids[1]: "rejected"}
    assert store.image(image).review_state == "reviewed"
    with pytest.raises(InvalidInputError, match="reopen"):
        store.replace_predictions(image, np.stack([blob(0, 4, 20, 24)]), [3], [0.9], "m2")
    with pytest.raises(InvalidInputError, match="reopen"):
        store.set_state(ids[0], "proposed")
    undone = store.undo(image)                    # one step: the decisions and the review state
    assert "accepted 1, rejected 1" in undone.summary and state_of(store, image) == before
    store.set_review_state(image, "reviewed", undecided="reject")
    assert all(a.state == "rejected" for a in store.annotations(image, include_rejected=True))


def test_bulk_accept_is_one_undo_step_with_a_true_description(store: Store, image: int):
    ids = store.replace_predictions(
        image, np.stack([blob(0, 4, 0, 4), blob(6, 9, 6, 9), blob(12, 16, 12, 16)]), [3, 3, 8],
        [0.9, 0.8, 0.7], "m1")
    before = state_of(store, image)
    store.set_states(image, dict.fromkeys(ids, "accepted"), summary="accept 3 shown proposals")
    assert all(a.state == "accepted" for a in store.annotations(image))
    assert store.undo(image).summary == "accept 3 shown proposals"
    assert state_of(store, image) == before
    store.delete_annotation(ids[1])
    store.set_category(ids[2], 3)
    undone = store.undo(image)
    assert undone.summary == f"set_category on annotation {ids[2]}"
    undone = store.undo(image)
    assert undone.summary == f"delete_annotation on annotation {ids[1]}"
    assert store.redo(image).summary == f"delete_annotation on annotation {ids[1]}"
    assert store.undo(image).summary == f"delete_annotation on annotation {ids[1]}"
    assert store.undo(image).summary.startswith("replace_predictions from m1")
    assert store.undo(image) is None


def test_reviewed_no_objects_is_only_ever_said_by_the_person(store: Store, image: int, tmp_path):
    ids = store.replace_predictions(image, np.stack([blob(0, 4, 0, 4), blob(10, 14, 10, 14)]),
                                    [3, 8], [0.9, 0.8], "m1")
    store.set_review_state(image, "reviewed", undecided="accept", min_score=0.5)
    store.delete_annotation(ids[0])                 # one object left: still reviewed
    assert store.image(image).review_state == "reviewed"
    before = state_of(store, image)
    store.set_state(ids[1], "rejected")             # the last one goes: no longer reviewed
    assert store.image(image).review_state == "in_progress"
    assert "no longer reviewed" in store.history(image)[-1].summary
    doc = json.loads(store.export_coco(store.image(image).dataset_id, tmp_path / "e.json",
                                       only_reviewed=True).read_text())
    assert store.image(image).file_name not in [i["file_name"] for i in doc["images"]]
    store.undo(image)                               # one step back: the object and "reviewed"
    assert state_of(store, image) == before
    store.redo(image)
    store.set_review_state(image, "reviewed")       # said by the person: reviewed, no objects
    assert store.image(image).review_state == "reviewed"
    drawn = store.add_annotation(image, blob(20, 24, 20, 24), 3, state="accepted")
    store.delete_annotation(drawn)                  # an object added and removed again
    assert store.image(image).review_state == "in_progress"
