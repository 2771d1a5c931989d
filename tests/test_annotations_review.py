"""Review states, predict-again and bulk edits on SQLite and PostgreSQL: what a person decided is
never duplicated, an undecided proposal is never read as "no object", one action is one undo."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from annotations import InvalidInputError, Store, UndecidedProposalsError
from test_annotations_store import W, H, blob, image, state_of  # noqa: F401 - fixture

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


def test_a_deleted_proposal_stays_deleted_on_predict_again(store: Store, image: int):
    """A person's delete of the model's proposal is a decision, as a reject is: the same object is
    not proposed again (any class) while the delete stands; undo of the delete brings it back
    and from then on it is an ordinary proposal again."""
    square, bar = blob(2, 10, 2, 10), blob(12, 15, 0, 30)
    first = store.replace_predictions(image, np.stack([square, bar]), [3, 8], [0.9, 0.8], "m1")
    store.delete_annotation(first[0])
    store.set_state(first[1], "rejected")
    again = store.replace_predictions(image, np.stack([square, bar]), [8, 8], [0.95, 0.9], "m2")
    assert again == [None, None], again
    assert "2 matched decided annotations" in store.history(image)[-1].summary
    assert [a.id for a in store.annotations(image)] == []
    store.undo(image)                                   # the predict run
    store.undo(image)                                   # the reject
    store.undo(image)                                   # the delete: the proposal is back
    assert store.annotation(first[0]).state == "proposed"
    store.delete_annotation(first[0])                   # a new delete, then undone: not in force
    store.undo(image)
    third = store.replace_predictions(image, np.stack([square]), [3], [0.9], "m3")
    assert third[0] is not None and first[0] not in [a.id for a in store.annotations(image)]


def test_relabel_never_accepts_and_predict_again_keeps_it(store: Store, image: int):
    """Relabel changes the class only: a proposal stays undecided (the person's now, so the next
    prediction run neither replaces it nor proposes its object again); one undo takes it back."""
    square = blob(2, 10, 2, 10)
    [ann] = store.replace_predictions(image, square[None], [3], [0.9], "m1")
    store.set_category(ann, 8)
    relabelled = store.annotation(ann)
    assert (relabelled.state, relabelled.source, relabelled.category_id) == ("proposed", "human", 8)
    again = store.replace_predictions(image, square[None], [3], [0.95], "m1")
    assert again == [None] and [a.id for a in store.annotations(image)] == [ann]
    store.undo(image)
    assert store.undo(image).summary == f"set_category on annotation {ann}"
    back = store.annotation(ann)
    assert (back.state, back.source, back.category_id) == ("proposed", "predicted", 3)


def test_a_class_made_by_a_label_goes_with_its_undo(store: Store, image: int, tmp_path):
    """A class made by the edit that labels with it (set_category or add_annotation with a new
    name) is removed by that edit's undo unless something else carries it, made again by its
    redo, and never left in the export with 0 annotations; a name that exists (any case) is reused."""
    dataset = store.image(image).dataset_id
    names = lambda: [c.name for c in store.categories(dataset)]  # noqa: E731
    ann = store.add_annotation(image, blob(2, 10, 2, 10), 3)
    store.set_category(ann, "squre")
    assert "squre" in names() and "made class 'squre'" in store.history(image)[-1].summary
    store.undo(image)
    assert "squre" not in names() and store.annotation(ann).category_id == 3
    doc = json.loads(store.export_coco(dataset, tmp_path / "e.json", only_reviewed=False).read_text())
    assert "squre" not in [c["name"] for c in doc["categories"]]
    store.redo(image)
    made = store.annotation(ann).category_id
    assert dict((c.id, c.name) for c in store.categories(dataset))[made] == "squre"
    other = store.add_annotation(image, blob(12, 20, 2, 10), " SQURE ")      # the same class
    assert store.annotation(other).category_id == made and names().count("squre") == 1
    store.undo(image)                                   # the add: the relabelled one still carries it
    store.undo(image)                                   # the relabel: now nothing does
    assert "squre" not in names()
    new = store.add_annotation(image, blob(12, 20, 12, 20), "bike")
    store.undo(image)
    assert "bike" not in names() and all(a.id != new for a in store.annotations(image))


def test_merge_moves_every_annotation_and_undo_takes_one_image_back(store: Store, image: int, tmp_path):
    """Merging a class into another relabels its annotations on every image (one undo step per
    image; the undo makes the class again for that image's part), rewrites older history so no
    undo brings back an annotation of a class that is gone, and removes the class."""
    dataset = store.image(image).dataset_id
    second = store.add_image(dataset, "y.png", W, H)
    a = store.add_annotation(image, blob(2, 10, 2, 10), "sqaure")
    b = store.add_annotation(second, blob(2, 10, 2, 10), 3)
    store.set_category(b, "sqaure")
    store.set_category(b, 8)                            # history of `second` names sqaure, b does not carry it
    c = store.add_annotation(second, blob(12, 20, 2, 10), "sqaure")
    typo = store.annotation(a).category_id
    with pytest.raises(InvalidInputError, match="cannot be merged into itself"):
        store.merge_categories(dataset, typo, typo)
    assert store.merge_categories(dataset, typo, 3) == {image: [a], second: [c]}
    assert "sqaure" not in [n.name for n in store.categories(dataset)]
    assert store.annotation(a).category_id == store.annotation(c).category_id == 3
    assert store.undo(second).summary.startswith("merge class 'sqaure' into 'a'")
    assert store.annotation(c).category_id == typo and store.annotation(a).category_id == 3
    store.redo(second)
    assert "sqaure" not in [n.name for n in store.categories(dataset)]
    for _ in range(4):                                  # every older edit of `second` undoes without the class
        store.undo(second)
    assert store.annotation(b).category_id == 3
    doc = json.loads(store.export_coco(dataset, tmp_path / "e.json", only_reviewed=False).read_text())
    assert {c["name"] for c in doc["categories"]} == {"a", "b"}
    assert store.rename_category(dataset, 8, "  big   b ") == "b"
    with pytest.raises(InvalidInputError, match="merge 'big b' into it instead"):
        store.rename_category(dataset, 8, "A")
