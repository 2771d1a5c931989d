"""Seeded random labeling sessions through the studio's public API (gradio_client), checked after
every step against an independent model of what the person did.

The model (``Person``) knows only the person's own actions and the rules the studio promises:
navigation predicts an image once per model version (unless reviewed), predict-again replaces
only undecided proposals and never re-proposes a decided object (mask IoU >= 0.5), mark-reviewed
asks while proposals are undecided, undo/redo step whole user actions. What a model proposes is
learned from the store when a prediction is expected (and checked against those rules). After
every step the store's annotations, the exported COCO files (all images, reviewed images; read
back with pycocotools) and the undo/redo messages must agree with the model: nothing lost, nothing
duplicated, nothing changed that the person did not change.
"""
from __future__ import annotations

import copy
import json
import random
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
from gradio_client import Client
from pycocotools import mask as mask_utils

from app import canvas
from app.project import file_version
from test_app_support import as_dict, make_project, served

MATCH_IOU = 0.5


@dataclass
class Ann:
    category: int
    mask: np.ndarray
    state: str
    source: str
    score: float | None
    version: str | None


@dataclass
class Img:
    anns: dict[int, Ann] = field(default_factory=dict)
    review: str = "unreviewed"
    undo: list[tuple[str, dict, str]] = field(default_factory=list)   # (label, anns, review) before
    redo: list[tuple[str, dict, str]] = field(default_factory=list)   # (label, anns, review) after


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


class Person:
    """The independent model of one person's session (see the module docstring)."""

    def __init__(self, project, client: Client, rng: random.Random, versions: list[str]) -> None:
        self.project, self.client, self.rng = project, client, rng
        self.store = project.store
        self.had_objects = False                 # the edit in progress took a reviewed image with objects
        self.images = {e.id: Img() for e in project.images()}
        self.order = [e.id for e in project.images()]
        self.sizes = {e.id: (e.height, e.width) for e in project.images()}
        self.categories = [cid for cid, _ in project.categories()]
        self.names = dict(project.categories())
        self.versions = versions
        self.version = project.model.version
        self.predicted: dict[int, set[str]] = {i: set() for i in self.images}
        self.current: int | None = None
        self.min_score = 0.5
        self.selected: int | None = None
        self.log: list[str] = []

    # ----------------------------------------------------------------------------- helpers

    def call(self, *args, api: str) -> dict:
        out = as_dict(self.client.predict(*args, api_name=api))
        shown = [a for a in args if not isinstance(a, str) or len(a) < 40]   # not mask edits
        self.log.append(f"{api}{shown} -> {out['status']}")
        return out

    @property
    def img(self) -> Img:
        return self.images[self.current]

    def edit(self, label: str) -> None:
        """The person is about to change the current image: remember how it was."""
        self.img.undo.append((label, copy.deepcopy(self.img.anns), self.img.review))
        self.img.redo.clear()
        self.had_objects = self.img.review == "reviewed" and self.accepted_any()

    def accepted_any(self) -> bool:
        return any(a.state == "accepted" for a in self.img.anns.values())

    def settle_review(self) -> None:
        """After an edit: a reviewed image whose last accepted object went is in progress again
        ("reviewed, no objects" is only ever said by the person)."""
        if self.had_objects and self.img.review == "reviewed" and not self.accepted_any():
            self.img.review = "in_progress"

    def visible(self) -> list[int]:
        return [i for i, a in self.img.anns.items() if a.state == "accepted" or (
            a.state == "proposed" and (a.score if a.score is not None else 1.0) >= self.min_score)]

    def needs_prediction(self, image_id: int) -> bool:
        img = self.images[image_id]
        if img.review == "reviewed":
            return False
        return self.version not in self.predicted[image_id] or any(
            a.state == "proposed" and a.source == "predicted" and a.version != self.version
            for a in img.anns.values())

    def learn_prediction(self, image_id: int) -> None:
        """A prediction was expected: the old undecided proposals must be gone, the new ones must be
        the current version's, and none may repeat an object the person decided."""
        img, previous = self.images[image_id], self.images[image_id].anns
        stored = {a.id: a for a in self.store.annotations(image_id, include_rejected=True)}
        kept = {i: a for i, a in previous.items() if a.state != "proposed" or a.source != "predicted"}
        assert set(kept) <= set(stored), "a decided (or relabelled) annotation disappeared in a prediction run"
        new = {i: a for i, a in stored.items() if i not in kept}
        assert not set(new) & set(previous), "an undecided proposal survived a prediction run"
        self.edit(f"replace_predictions from {self.version}")
        for i, a in new.items():
            assert (a.source, a.state, a.model_version) == ("predicted", "proposed", self.version), a
            for d in kept.values():
                assert iou(a.mask, d.mask) < MATCH_IOU, f"#{i} repeats a decided annotation"
        img.anns = {**kept, **{i: Ann(a.category_id, a.mask, "proposed", "predicted", a.score, self.version)
                               for i, a in new.items()}}
        self.predicted[image_id].add(self.version)

    def open(self, image_id: int, api: str, *args) -> None:
        expect_prediction = self.needs_prediction(image_id)
        out = self.call(*args, api=api)
        if image_id != self.current:
            self.selected = None
        self.current = image_id
        file_name = self.project.image(image_id).file_name
        assert file_name in out["review_state"] and file_name in out["status"], out["status"]
        if expect_prediction:
            assert "proposals from" in out["status"], out["status"]
            self.learn_prediction(image_id)

    # ----------------------------------------------------------------------------- actions

    def navigate(self) -> None:
        k = self.order.index(self.current)
        choice = self.rng.choice(["next", "previous", "open"])
        if choice == "next":
            self.open(self.order[(k + 1) % len(self.order)], "/next_image")
        elif choice == "previous":
            self.open(self.order[(k - 1) % len(self.order)], "/previous_image")
        else:
            target = self.rng.choice(self.order)
            self.open(target, "/open_image", target)

    def select(self, pool: list[int]) -> int | None:
        if not pool:
            return None
        self.selected = self.rng.choice(sorted(pool))
        self.call(self.selected, api="/select_instance")
        return self.selected

    def set_state(self) -> None:
        ann = self.select(self.visible())
        if ann is None:
            return
        state = self.rng.choice(["accepted", "rejected"])
        self.edit(f"set_state {state} on annotation {ann}")
        self.img.anns[ann].state = state
        out = self.call(api="/accept" if state == "accepted" else "/reject")
        assert state in out["status"]
        self.settle_review()

    def delete(self) -> None:
        ann = self.select(self.visible())
        if ann is None:
            return
        self.edit(f"delete_annotation on annotation {ann}")
        del self.img.anns[ann]
        assert "deleted" in self.call(api="/delete")["status"]
        self.settle_review()
        self.selected = None

    def relabel(self) -> None:
        ann = self.select(self.visible())
        if ann is None:
            return
        category = self.rng.choice(self.categories)
        self.edit(f"set_category on annotation {ann}")
        a = self.img.anns[ann]
        a.category = category
        if (a.source, a.state) == ("predicted", "proposed"):
            a.source = "human"                     # the person's now, still undecided: relabel never accepts
        self.call(self.names[category], api="/relabel")

    def accept_shown(self) -> None:
        todo = [i for i in self.visible() if self.img.anns[i].state == "proposed"]
        out = self.call(api="/accept_shown")
        if todo:
            self.edit(f"accept {len(todo)} shown proposals")
            for i in todo:
                self.img.anns[i].state = "accepted"
        else:
            assert "no proposals" in out["status"]

    def draw(self) -> None:
        h, w = self.sizes[self.current]
        y, x = self.rng.randrange(0, h - 12), self.rng.randrange(0, w - 12)
        mask = np.zeros((h, w), bool)
        mask[y:y + self.rng.randrange(4, 12), x:x + self.rng.randrange(4, 12)] = True
        category = self.rng.choice(self.categories)
        out = self.call(canvas.edit_value(mask), self.names[category], api="/add_mask")
        ann = int(re.search(r"added #(\d+)", out["status"]).group(1))
        self.edit(f"add_annotation {ann}")
        self.img.anns[ann] = Ann(category, mask, "accepted", "human", None, None)
        self.selected = ann

    def erase(self) -> None:
        ann = self.select(self.visible())
        if ann is None:
            return
        a = self.img.anns[ann]
        ys, xs = np.nonzero(a.mask)
        cut = a.mask.copy()
        column = int(self.rng.choice(xs))
        cut[:, column:column + 3] = False
        out = self.call(canvas.edit_value(cut), api="/save_mask")
        if not cut.any():
            assert "empty" in out["status"]
            return
        self.edit(f"update_mask on annotation {ann}")
        a.mask = cut
        if (a.source, a.state) == ("predicted", "proposed"):
            a.source, a.state = "human", "accepted"

    def step_history(self, redo: bool) -> None:
        img = self.img
        stack, other = (img.redo, img.undo) if redo else (img.undo, img.redo)
        out = self.call(api="/redo" if redo else "/undo")
        word = "redo" if redo else "undo"
        if not stack:
            assert f"nothing to {word}" in out["status"], out["status"]
            return
        if not redo and stack[-1][0].startswith("replace_predictions"):
            assert "nothing to undo: the model's proposals" in out["status"], out["status"]
            return
        label, anns, review = stack.pop()
        other.append((label, copy.deepcopy(img.anns), img.review))
        img.anns, img.review = anns, review
        assert out["status"].startswith(f"{word}: {label}"), (out["status"], label)

    def predict_again(self) -> None:
        out = self.call(api="/predict")
        if self.img.review == "reviewed":
            assert "reopen" in out["status"].lower(), out["status"]
            return
        assert "proposals from" in out["status"], out["status"]
        self.learn_prediction(self.current)

    def mark_reviewed(self) -> None:
        out = self.call(api="/mark_reviewed")
        proposals = [i for i, a in self.img.anns.items() if a.state == "proposed"]
        if proposals:
            assert "undecided" in out["status"] and "undecided" in out["ask_text"], out["status"]
            answer = self.rng.choice(["accept", "reject", "cancel"])
            if answer == "cancel":
                return
            self.edit("set_review_state reviewed")
            for i in proposals:
                a = self.img.anns[i]
                keep = answer == "accept" and (a.score if a.score is not None else 1.0) >= self.min_score
                a.state = "accepted" if keep else "rejected"
            self.img.review = "reviewed"
            api = "/review_accept_shown" if answer == "accept" else "/review_reject_undecided"
        elif not any(a.state == "accepted" for a in self.img.anns.values()):
            assert "no accepted objects" in out["status"], out["status"]
            if self.rng.random() < 0.3:
                return
            self.edit("set_review_state reviewed")
            self.img.review = "reviewed"
            api = "/review_no_objects"
        else:
            self.edit("set_review_state reviewed")
            self.img.review = "reviewed"
            assert "marked reviewed" in out["status"], out["status"]
            return
        assert "marked reviewed" in self.call(api=api)["status"]

    def reopen(self) -> None:
        self.edit("set_review_state in_progress")
        self.img.review = "in_progress"
        self.call(api="/reopen")

    def switch_model(self) -> None:
        target = self.rng.choice([v for v in self.versions if v != self.version])
        self.version = target
        expect_prediction = self.needs_prediction(self.current)
        out = self.call(target, api="/switch_model")
        assert f"switched to {target}" in out["status"] and target in out["project_info"], out["status"]
        if expect_prediction:
            self.learn_prediction(self.current)

    def reload(self) -> None:
        self.client = Client(self.client.src, verbose=False)   # a new page: a new session
        self.min_score, self.selected = 0.5, None
        self.open(self.current, "/open_image", self.current)

    def threshold(self) -> None:
        self.min_score = self.rng.choice([0.05, 0.3, 0.5, 0.8])
        self.call(self.min_score, api="/set_min_score")

    # ------------------------------------------------------------------------------- checks

    def check(self, through_api: bool = False) -> None:
        """The store and both exports agree with the model, for every image. The exports are the
        studio's own (``Project.export_coco``, what the export button calls), or with
        ``through_api`` fetched through the API."""
        for image_id, img in self.images.items():
            stored = {a.id: a for a in self.store.annotations(image_id, include_rejected=True)}
            assert set(stored) == set(img.anns), (image_id, sorted(stored), sorted(img.anns))
            for i, a in img.anns.items():
                s = stored[i]
                assert (s.category_id, s.state, s.source) == (a.category, a.state, a.source), (i, s, a)
                assert np.array_equal(s.mask, a.mask), f"annotation {i}: mask changed"
            assert self.project.image(image_id).review_state == img.review, image_id
        files = {e.id: e.file_name for e in self.project.images()}
        for only_reviewed in (False, True):
            path = (self.client.predict(only_reviewed, api_name="/export_coco")[0] if through_api
                    else self.project.export_coco(only_reviewed))
            doc = json.loads(Path(path).read_text())
            by_file = {im["file_name"]: im for im in doc["images"]}
            expected_files = {files[i] for i, img in self.images.items()
                              if not only_reviewed or img.review == "reviewed"}
            assert set(by_file) == expected_files
            got: dict[str, list] = {name: [] for name in by_file}
            coco_to_file = {im["id"]: im["file_name"] for im in doc["images"]}
            for ann in doc["annotations"]:
                got[coco_to_file[ann["image_id"]]].append(
                    (ann["category_id"], mask_utils.decode(ann["segmentation"]).astype(bool).tobytes()))
            for image_id, img in self.images.items():
                if files[image_id] not in by_file:
                    continue
                want = [(a.category, a.mask.tobytes()) for a in img.anns.values() if a.state == "accepted"]
                assert sorted(got[files[image_id]]) == sorted(want), f"export of {files[image_id]}"


ACTIONS = [("navigate", 3), ("set_state", 4), ("delete", 2), ("relabel", 2), ("accept_shown", 2),
           ("draw", 2), ("erase", 2), ("undo", 3), ("redo", 2), ("predict_again", 1),
           ("mark_reviewed", 2), ("reopen", 1), ("switch_model", 1), ("reload", 1), ("threshold", 1)]


def run(project, url: str, versions: list[str], seed: int, steps: int) -> None:
    rng = random.Random(seed)
    person = Person(project, Client(url, verbose=False), rng, versions)
    first = project.images()[0].id
    person.open(first, "/open_image", first)
    person.check(through_api=True)
    names, weights = zip(*ACTIONS)
    for step in range(steps):
        action = rng.choices(names, weights)[0]
        try:
            if action in ("undo", "redo"):
                person.step_history(redo=action == "redo")
            else:
                getattr(person, action)()
            person.check(through_api=step % 10 == 9)
        except AssertionError as e:
            history = "\n".join(person.log[-12:])
            raise AssertionError(f"seed {seed}, step {step} ({action}): {e}\nlast calls:\n{history}") from None


@contextmanager
def random_studio(folder: Path, seed: int) -> Iterator[tuple]:
    """(project, url, versions): a served 4-image project with a second model version (a freshly
    initialised tiny FastInst with the same classes)."""
    import torch
    from fastinst import build_model, save_checkpoint
    project = make_project(folder, num_images=4, size=(120, 160), seed=seed)
    torch.manual_seed(seed)
    other = folder / "other.safetensors"
    names = list(project.model.predictor.class_names)
    save_checkpoint(other, build_model("tiny", num_classes=len(names)), preset="tiny", class_names=names)
    project.store.record_model_version(file_version(other), str(other))
    with served(project) as url:
        yield project, url, [project.model.version, file_version(other)]


def test_random_session_short(tmp_path: Path) -> None:
    with random_studio(tmp_path, seed=1) as (project, url, versions):
        run(project, url, versions, seed=1, steps=30)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_random_session_long(tmp_path: Path, seed: int) -> None:
    with random_studio(tmp_path, seed=seed) as (project, url, versions):
        run(project, url, versions, seed=seed, steps=400)
