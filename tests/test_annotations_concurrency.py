"""Two people editing at once: separate Store objects (own engines, own connections) on one
database, racing from threads, on SQLite and PostgreSQL. No update may be silently lost."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from annotations import ConflictError, Store

pytest_plugins = ["conftest_pg"]
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

H, W = 16, 16


def square(offset: int, size: int = 3) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    row, col = divmod(offset % (W - size), 4)
    mask[row:row + size, col * 3:col * 3 + size] = True
    return mask


@pytest.fixture
def two_stores(store_url: str, tmp_path: Path):
    """Alice's and Bob's stores on one database, with one dataset, two images, one category."""
    alice = Store(store_url, user="alice")
    bob = Store(store_url, user="bob")
    dataset = alice.create_dataset("shared", tmp_path)
    alice.add_category(dataset, "thing", 1)
    images = [alice.add_image(dataset, f"{i}.png", W, H) for i in range(2)]
    yield alice, bob, images
    alice.close()
    bob.close()


def test_loser_of_a_race_on_one_revision_gets_a_conflict(two_stores):
    alice, bob, (image, _) = two_stores
    ann = alice.add_annotation(image, square(0), 1)
    for round_ in range(4):
        revision = bob.image(image).revision
        barrier = threading.Barrier(2)
        masks = {"alice": square(round_ + 1), "bob": square(round_ + 7)}

        def edit(store: Store) -> str:
            barrier.wait()
            try:
                store.update_mask(ann, masks[store.user], expected_revision=revision)
                return "won"
            except ConflictError as error:
                assert f"you expected revision {revision} but it is now at revision " \
                       f"{revision + 1}" in str(error)
                return "lost"

        with ThreadPoolExecutor(2) as pool:
            outcome = dict(zip(("alice", "bob"), pool.map(edit, (alice, bob))))
        assert sorted(outcome.values()) == ["lost", "won"]
        winner = next(user for user, result in outcome.items() if result == "won")
        assert np.array_equal(alice.annotation(ann).mask, masks[winner])
        assert alice.image(image).revision == revision + 1
        assert alice.history(image)[-1].user == winner


def test_edits_without_expected_revision_are_all_kept(two_stores):
    alice, bob, images = two_stores
    per_worker = 6

    def add_many(store: Store, worker: int) -> list[int]:
        return [
            store.add_annotation(images[i % 2], square(worker * per_worker + i), 1)
            for i in range(per_worker)
        ]

    jobs = [(alice, 0), (bob, 1), (alice, 2), (bob, 3)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        added = [ann for anns in pool.map(lambda job: add_many(*job), jobs) for ann in anns]
    assert len(set(added)) == len(jobs) * per_worker
    stored = [ann for image in images for ann in alice.annotations(image)]
    assert sorted(a.id for a in stored) == sorted(added)
    assert len({a.coco_id for a in stored}) == len(stored)  # COCO ids stay unique
    for image in images:
        count = len(jobs) * per_worker // 2
        assert alice.image(image).revision == count
        assert [e.revision for e in bob.history(image)] == list(range(1, count + 1))


def test_undo_by_one_person_after_the_others_edit_is_a_conflict_when_checked(two_stores):
    alice, bob, (image, _) = two_stores
    ann = alice.add_annotation(image, square(0), 1)
    alice_saw = alice.image(image).revision
    bob.update_mask(ann, square(5))
    with pytest.raises(ConflictError, match="bob changed the image"):
        alice.undo(image, expected_revision=alice_saw)
    assert np.array_equal(alice.annotation(ann).mask, square(5))
