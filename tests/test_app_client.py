"""The studio driven through its HTTP API with gradio_client: a real launched app, a real SQLite
store, a real model. Exported COCO JSON is judged with pycocotools."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from pycocotools import mask as mask_utils

from app import canvas
from app.inspect_view import visible_instances
from fastinst import Predictor
from test_app_support import as_dict, canvas_image, make_project, served


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """(project, client) for a served 3-image project."""
    folder = tmp_path_factory.mktemp("studio")
    project = make_project(folder)
    with served(project) as url:
        yield project, Client(url, verbose=False)


def decode(ann: dict, height: int, width: int) -> np.ndarray:
    """An exported annotation's mask via pycocotools."""
    seg = ann["segmentation"]
    rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg, list) else seg
    if isinstance(rle, list):
        rle = mask_utils.merge(rle)
    return mask_utils.decode(rle).astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_predict_correct_export(studio) -> None:
    project, client = studio
    image_id = project.images()[0].id
    entry = project.image(image_id)
    r = as_dict(client.predict(image_id, api_name="/open_image"))
    assert "unreviewed" in r["review_state"] and canvas_image(r["inspect_image"]).is_file()
    r = as_dict(client.predict(api_name="/predict"))
    assert "proposals" in r["status"], r["status"]
    r = as_dict(client.predict(api_name="/undo"))          # a stray Ctrl+Z keeps the proposals
    assert "nothing to undo: the model's proposals" in r["status"], r["status"]
    assert any(a.state == "proposed" for a in project.store.annotations(image_id))
    r = as_dict(client.predict(0.05, api_name="/set_min_score"))
    rows = r["instance_table"]["data"]
    assert len(rows) >= 5, "the model should propose at least 5 instances at score >= 0.05"
    a, b, c, d, e = (row[0] for row in rows[:5])
    oracle = Predictor.from_checkpoint(project.model.weights, device="cpu").predict(project.pixels(image_id))

    # accept a: its stored mask matches an independent run of the model
    client.predict(a, api_name="/select_instance")
    shown_a = project.store.annotation(a).mask
    assert max(iou(shown_a, m) for m in oracle.masks) > 0.99
    assert "accepted" in as_dict(client.predict(api_name="/accept"))["status"]
    # delete b, reject e
    client.predict(b, api_name="/select_instance")
    assert "deleted" in as_dict(client.predict(api_name="/delete"))["status"]
    client.predict(e, api_name="/select_instance")
    assert "rejected" in as_dict(client.predict(api_name="/reject"))["status"]
    # relabel c to a class it does not have
    row_c = next(row for row in rows if row[0] == c)
    new_class = next(n for n in project.class_names() if n != row_c[1])
    client.predict(c, api_name="/select_instance")
    shown_c = project.store.annotation(c).mask
    r = as_dict(client.predict(new_class, api_name="/relabel"))
    assert new_class in r["status"] and "still proposed" in r["status"], r["status"]
    assert project.store.annotation(c).state == "proposed"      # relabel does one thing: it never accepts
    assert "accepted" in as_dict(client.predict(api_name="/accept"))["status"]
    # edit d's mask: a square brushed on, a band erased off, sent as a mask edit
    client.predict(d, api_name="/select_instance")
    before_d = project.store.annotation(d).mask
    edited_d = before_d.copy()
    edited_d[5:25, 5:25] = True
    edited_d[:, 150:160] = False
    r = as_dict(client.predict(canvas.edit_value(edited_d), api_name="/save_mask"))
    assert "mask saved" in r["status"], r["status"]
    # draw a new instance from scratch
    drawn = np.zeros((entry.height, entry.width), bool)
    drawn[100:140, 200:260] = True
    r = as_dict(client.predict(canvas.edit_value(drawn), "square", api_name="/add_mask"))
    assert "added" in r["status"], r["status"]
    n_rows = len(r["instance_table"]["data"])
    r = as_dict(client.predict(api_name="/undo"))
    assert len(r["instance_table"]["data"]) == n_rows - 1
    r = as_dict(client.predict(api_name="/redo"))
    assert len(r["instance_table"]["data"]) == n_rows
    undecided = [a for a in project.store.annotations(image_id) if a.state == "proposed"]
    r = as_dict(client.predict(api_name="/mark_reviewed"))
    if undecided:    # undecided proposals: it asks first
        assert "undecided" in r["status"] and "unreviewed" in r["review_state"] and "Accept the" in r["ask_text"]
        r = as_dict(client.predict(api_name="/review_reject_undecided"))
    assert "reviewed" in r["review_state"] and "unreviewed" not in r["review_state"], r["status"]

    path, message = client.predict(True, api_name="/export_coco")
    coco = json.loads(Path(path).read_text())
    assert [im["file_name"] for im in coco["images"]] == [entry.file_name]
    names = {cat["id"]: cat["name"] for cat in coco["categories"]}
    got = [(decode(ann, entry.height, entry.width), names[ann["category_id"]]) for ann in coco["annotations"]]
    assert len(got) == 4, "a (accepted), c (relabelled), d (edited) and the drawn one; no proposals"
    expected = [(shown_a, rows[0][1]), (shown_c, new_class), (edited_d, None), (drawn, "square")]
    for mask, name in expected:
        match = [g for g in got if np.array_equal(g[0], mask)]
        assert match, "an exported mask differs from what was accepted/edited/drawn"
        assert name is None or match[0][1] == name

    # rejecting every accepted object of the reviewed image: "reviewed, no objects" is never
    # implied, the image goes back to in progress and the status says why
    accepted = [a.id for a in project.store.annotations(image_id) if a.state == "accepted"]
    for ann_id in accepted:
        client.predict(ann_id, api_name="/select_instance")
        r = as_dict(client.predict(api_name="/reject"))
    assert "no longer reviewed" in r["status"] and "in progress" in r["review_state"], r
    assert project.image(image_id).review_state == "in_progress"


def test_corrupt_image_is_reported_and_nothing_is_lost(studio) -> None:
    project, client = studio
    images = project.images()
    broken = images[-1]
    path = project.store.image_path(broken.id)
    original = path.read_bytes()
    path.write_bytes(b"this is not a png")
    project.pixels_cache.discard(lambda key: key == broken.id)
    try:
        r = as_dict(client.predict(broken.id, api_name="/open_image"))
        assert "cannot read image" in r["status"]
        r = as_dict(client.predict(api_name="/mark_reviewed"))     # nobody saw it: never reviewed
        assert "cannot read image" in r["status"] and "no objects" not in r["ask_text"], r
        assert project.image(broken.id).review_state == broken.review_state
        r = as_dict(client.predict(images[0].id, api_name="/open_image"))
        assert r["status"].startswith("opened") and canvas_image(r["inspect_image"]).is_file()
        assert len(project.images()) == len(images)
    finally:
        path.write_bytes(original)
        project.pixels_cache.discard(lambda key: key == broken.id)


def test_malformed_coco_import_changes_nothing(studio, tmp_path: Path) -> None:
    project, client = studio
    before = [(e.id, e.revision) for e in project.images()]
    anns = sum(len(project.store.annotations(e.id, include_rejected=True)) for e in project.images())
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "nope.png", "width": 3}], "annotations": [')
    r = as_dict(client.predict(handle_file(str(bad)), api_name="/import_coco"))
    assert r["status"].startswith("⚠") and "bad.json: not valid JSON" in r["status"]
    assert str(bad.parent) not in r["status"] and "gradio" not in r["status"]  # the file's name, not a temp path
    assert [(e.id, e.revision) for e in project.images()] == before
    assert sum(len(project.store.annotations(e.id, include_rejected=True)) for e in project.images()) == anns


def test_coco_upload_report_names_the_files_own_ids(studio, tmp_path: Path) -> None:
    project, client = studio
    gt_path = project.store.dataset(project.dataset_id).image_root.parent / "annotations.json"
    document = json.loads(gt_path.read_text())
    for ann in document["annotations"]:
        ann["category_id"] = 9                                   # not in categories: every one refused
    document["annotations"][3]["id"] = "label-studio-17"
    upload = tmp_path / "shapes.json"
    upload.write_text(json.dumps(document))
    before = [(e.id, e.revision) for e in project.images()]
    result = client.predict(handle_file(str(upload)), api_name="/import_coco")
    r = as_dict(result)
    assert "refused: annotations[3] (id 'label-studio-17') in shapes.json: category_id 9 is not in categories" \
        in r["status"], r["status"]
    assert result[-1] == r["status"], "the report shows in the COCO tab too, where the file was given"
    assert [(e.id, e.revision) for e in project.images()] == before


def test_coco_import_adds_ground_truth_losslessly(studio) -> None:
    """Every ground-truth object comes in pixel for pixel, except one a person already decided in
    the studio (the same object, mask IoU >= 0.5): the person's version is kept and the report
    names it, so no object is there twice."""
    project, client = studio
    gt_path = project.store.dataset(project.dataset_id).image_root.parent / "annotations.json"
    gt = json.loads(gt_path.read_text())
    r = as_dict(client.predict(handle_file(str(gt_path)), api_name="/import_coco"))
    assert r["status"].startswith("imported:"), r["status"]
    by_name = {e.file_name: e for e in project.images()}
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for image in gt["images"]:
        entry = by_name[image["file_name"]]
        imported = [i for i in project.instances(entry.id) if i.source == "imported"]
        expected = [(decode(a, entry.height, entry.width), names[a["category_id"]])
                    for a in gt["annotations"] if a["image_id"] == image["id"]]
        decided = [i for i in project.instances(entry.id) if i.source != "imported" and i.state != "proposed"]
        for mask, name in expected:
            if any(np.array_equal(i.mask, mask) and i.class_name == name for i in imported):
                continue
            same = [i for i in decided if iou(i.mask, mask) >= 0.5]
            assert same, f"{image['file_name']}: a ground-truth {name} is neither imported nor a person's object"
            assert any(f"the same object as annotation {i.id}" in r["status"] for i in same), r["status"]
        assert len(imported) <= len(expected)


def test_sessions_keep_their_own_selection_and_filters(studio) -> None:
    project, client = studio
    other = Client(client.src, verbose=False)
    image_id = project.images()[1].id
    for c in (client, other):
        c.predict(image_id, api_name="/open_image")
    client.predict(api_name="/predict")
    first = as_dict(client.predict(0.05, api_name="/set_min_score"))
    assert len(first["instance_table"]["data"]) == len(visible_instances(project.instances(image_id), 0.05))
    chosen = first["instance_table"]["data"][0][0]
    mine = as_dict(client.predict(chosen, api_name="/select_instance"))
    assert f"#{chosen} " in mine["instance_info"]
    theirs = as_dict(other.predict(0.99, api_name="/set_min_score"))
    assert "No instance selected" in theirs["instance_info"]
    assert len(theirs["instance_table"]["data"]) == len(visible_instances(project.instances(image_id), 0.99))
    again = as_dict(client.predict(chosen, api_name="/select_instance"))
    assert again["instance_table"]["data"] == first["instance_table"]["data"]
    assert f"#{chosen} " in again["instance_info"]


def test_a_key_pressed_while_the_page_is_behind_changes_nothing(studio) -> None:
    """The page sends the place it shows with every edit: when the session has already moved on
    (queued N presses), the edit is refused and the page catches up instead."""
    project, client = studio
    first, second = project.images()[0].id, project.images()[1].id
    entry = project.image(second)
    if entry.review_state == "reviewed":          # tests run in any order
        project.store.set_review_state(second, "in_progress")
    box = np.zeros((entry.height, entry.width), bool)
    box[10:40, 10:60] = True
    proposed = [i for i in project.store.replace_predictions(
        second, box[None], [project.categories()[0][0]], [0.9], project.model.version) if i is not None]
    assert proposed
    client.predict(second, api_name="/open_image")
    client.predict(0.05, api_name="/set_min_score")
    before = [(a.id, a.state) for a in project.store.annotations(second, include_rejected=True)]
    r = as_dict(client.predict(f"image={first}&tab=correct", api_name="/accept_shown"))
    assert "the page was behind" in r["status"] and project.image(second).file_name in r["status"], r["status"]
    assert [(a.id, a.state) for a in project.store.annotations(second, include_rejected=True)] == before
    r = as_dict(client.predict(f"image={second}&tab=correct", api_name="/accept_shown"))
    assert f"accept {len(proposed)} shown proposals" in r["status"], r["status"]
    assert all(project.store.annotation(i).state == "accepted" for i in proposed)


def test_an_image_of_another_project_in_the_store_is_never_opened(studio) -> None:
    """A bookmark or API call naming an image id of another dataset in the same store is refused by
    name; the session stays where it was and the other project's annotations are untouched."""
    project, client = studio
    mine = project.images()[0]
    r = as_dict(client.predict(mine.id, api_name="/open_image"))
    store = project.store
    other = store.create_dataset("someone else's project", store.image_path(mine.id).parent)
    foreign = store.add_image(other, store.image_path(mine.id).name, mine.width, mine.height)
    mask = np.zeros((mine.height, mine.width), bool)
    mask[10:30, 10:40] = True
    category = store.add_category(other, "thing")
    ann = store.add_annotation(foreign, mask, category, source="human")
    r = as_dict(client.predict(foreign, api_name="/open_image"))
    assert f"image #{foreign} belongs to another project" in r["status"], r["status"]
    assert mine.file_name in r["review_state"]
    client.predict(ann, api_name="/select_instance")
    client.predict(api_name="/reject")
    assert store.annotation(ann).state == "accepted" and store.image(foreign).revision == 1


def test_a_class_the_model_does_not_know_is_made_by_labelling_with_it(studio, tmp_path: Path) -> None:
    """A labeler types a new class name in the Class picker and relabels (L): it asks once; yes
    makes the class, the instance carries it, the picker lists it, and the export has it."""
    project, client = studio
    image_id = project.images()[1].id
    client.predict(image_id, api_name="/open_image")
    r = as_dict(client.predict(0.05, api_name="/set_min_score"))
    target = r["instance_table"]["data"][0][0]
    client.predict(target, api_name="/select_instance")
    before = project.store.annotation(target)
    r = as_dict(client.predict("  bicycle ", api_name="/relabel"))
    assert "'bicycle' is not a class" in r["status"] and "bicycle" in r["ask_text"], r["status"]
    assert "bicycle" not in project.class_names() and project.store.annotation(target) == before
    r = as_dict(client.predict(api_name="/make_class"))
    assert "→ bicycle (new class 'bicycle')" in r["status"], r["status"]
    assert "bicycle" in project.class_names()
    stored = project.store.annotation(target)
    assert project.class_names_by_id()[stored.category_id] == "bicycle" and stored.state == before.state
    assert "bicycle" in json.dumps(r["class_picker"])
    again = as_dict(client.predict("Bicycle", api_name="/relabel"))      # the second time it exists, any case
    assert "new class" not in again["status"] and "→ bicycle" in again["status"], again["status"]
    assert [n.casefold() for n in project.class_names()].count("bicycle") == 1
    assert "type or choose a class name first" in as_dict(client.predict(" ", api_name="/relabel"))["status"]
    assert project.class_names_by_id()[project.store.annotation(target).category_id] == "bicycle"


def test_a_typo_class_asks_and_its_undo_removes_it_everywhere(studio, tmp_path: Path) -> None:
    """`squre` + L asks; cancel changes nothing; yes relabels and makes the class; undo of that
    relabel removes the class from the project, the picker and the export (no category with 0
    annotations), redo brings both back; a class made by a drawn mask (add_mask) goes the same way."""
    project, client = studio
    image_id = project.images()[0].id
    client.predict(image_id, api_name="/open_image")
    if project.image(image_id).review_state == "reviewed":
        client.predict(api_name="/reopen")
    client.predict(0.05, api_name="/set_min_score")
    rows = as_dict(client.predict(True, api_name="/set_show_rejected"))["instance_table"]["data"]
    target = rows[0][0]
    client.predict(target, api_name="/select_instance")
    r = as_dict(client.predict("squre", api_name="/relabel"))
    assert "'squre' is not a class" in r["status"], r["status"]
    r = as_dict(client.predict(api_name="/relabel"))                  # no class typed: the picker's value
    r = as_dict(client.predict("squre", api_name="/relabel"))
    assert "not a class" in r["status"]
    r = as_dict(client.predict(api_name="/make_class"))
    assert "new class 'squre'" in r["status"] and "squre" in project.class_names(), r["status"]
    r = as_dict(client.predict(api_name="/undo"))
    assert "undo: set_category" in r["status"], r["status"]
    assert "squre" not in project.class_names()
    assert "squre" not in json.dumps(r["class_picker"]), r["class_picker"]
    path, _ = client.predict(False, api_name="/export_coco")
    assert "squre" not in [c["name"] for c in json.loads(Path(path).read_text())["categories"]]
    r = as_dict(client.predict(api_name="/redo"))
    assert project.class_names_by_id()[project.store.annotation(target).category_id] == "squre"
    client.predict(api_name="/undo")
    assert "squre" not in project.class_names()
    # a drawn mask labelled with a new name: asks, the mask is kept for the browser to apply again
    entry = project.image(image_id)
    drawn = np.zeros((entry.height, entry.width), bool)
    drawn[2:12, 2:30] = True
    r = as_dict(client.predict(canvas.edit_value(drawn), "blob", api_name="/add_mask"))
    assert "'blob' is not a class" in r["status"] and "blob" not in project.class_names(), r["status"]
    client.predict(api_name="/make_class")
    r = as_dict(client.predict(canvas.edit_value(drawn), "blob", api_name="/add_mask"))
    assert "added" in r["status"] and "new class 'blob'" in r["status"], r["status"]
    client.predict(api_name="/undo")
    assert "blob" not in project.class_names()


def test_classes_are_renamed_merged_and_deleted_from_the_ui(studio, tmp_path: Path) -> None:
    """The class manager: a typo class is renamed, merged into another (its annotations follow,
    undo on the image takes them back and makes the class again), and deleted when unused; the
    model's classes and classes in use stay, each refusal says why."""
    project, client = studio
    image_id = project.images()[2].id
    client.predict(image_id, api_name="/open_image")
    if project.image(image_id).review_state == "reviewed":
        client.predict(api_name="/reopen")
    rows = as_dict(client.predict(0.05, api_name="/set_min_score"))["instance_table"]["data"]
    target = rows[0][0]
    client.predict(target, api_name="/select_instance")
    client.predict("sqaure", api_name="/relabel")
    client.predict(api_name="/make_class")
    result = client.predict("sqaure", "squares", api_name="/rename_class")
    assert "renamed class 'sqaure' to 'squares'" in result[-3], result[-3]
    assert ["squares", 1] in result[-2]["data"]
    result = client.predict("squares", "", api_name="/delete_class")
    assert "is in use" in result[-3] and "squares" in project.class_names(), result[-3]
    result = client.predict("circle", "", api_name="/delete_class")
    assert "the model predicts" in result[-3], result[-3]
    result = client.predict("squares", "square", api_name="/merge_class")
    assert "merged class 'squares' into 'square'" in result[-3], result[-3]
    assert "squares" not in project.class_names()
    assert project.class_names_by_id()[project.store.annotation(target).category_id] == "square"
    r = as_dict(client.predict(api_name="/undo"))                     # the merge, on this image
    assert "merge class 'squares' into 'square'" in r["status"], r["status"]
    assert project.class_names_by_id()[project.store.annotation(target).category_id] == "squares"
    client.predict(api_name="/redo")
    assert "squares" not in project.class_names()
    client.predict("dog", api_name="/relabel")
    client.predict(api_name="/make_class")
    client.predict("square", api_name="/relabel")                      # relabelled away: unused now
    result = client.predict("dog", "", api_name="/delete_class")
    assert "deleted class 'dog'" in result[-3] and "dog" not in project.class_names(), result[-3]
    assert [name for name, _ in result[-2]["data"]] == project.class_names()


def test_a_refused_relabel_to_a_new_class_leaves_no_class_behind(studio) -> None:
    """Another tab changed the image first, so the relabel to a new class is refused: the class it
    would have made is not in the project, the picker or the export."""
    project, client = studio
    image_id = project.images()[2].id
    client.predict(image_id, api_name="/open_image")
    if project.image(image_id).review_state == "reviewed":
        client.predict(api_name="/reopen")
    rows = as_dict(client.predict(0.05, api_name="/set_min_score"))["instance_table"]["data"]
    client.predict(rows[0][0], api_name="/select_instance")
    assert "not a class" in as_dict(client.predict("tricycle", api_name="/relabel"))["status"]
    project.store.set_state(rows[1][0], "accepted")        # the other tab's edit moves the revision on
    r = as_dict(client.predict(api_name="/make_class"))
    assert "→ tricycle" not in r["status"] and "changed" in r["status"], r["status"]
    assert "tricycle" not in project.class_names()
    assert "tricycle" not in json.dumps(r["class_picker"])


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory):
    """(project, client) for a served 3-image project nobody decided anything on yet: each test
    below takes one image of it."""
    project = make_project(tmp_path_factory.mktemp("fresh"))
    with served(project) as url:
        yield project, Client(url, verbose=False)


def _fresh_image(project, client, index: int) -> int:
    """Open image ``index`` (predicted on opening) with the proposals shown at threshold 0.05."""
    image_id = project.images()[index].id
    client.predict(image_id, api_name="/open_image")
    client.predict(0.05, api_name="/set_min_score")
    assert any(a.state == "proposed" for a in project.store.annotations(image_id))
    return image_id


def test_reopen_with_accepted_objects_says_only_that_it_reopened(fresh) -> None:
    """Reopen sets a reviewed image back to in progress by the person's word: it does not claim
    "no accepted object is left" while objects are; rejecting the last one still says so."""
    project, client = fresh
    image_id = _fresh_image(project, client, 1)
    proposals = [a.id for a in project.store.annotations(image_id) if a.state == "proposed"]
    for ann in proposals[:2]:
        client.predict(ann, api_name="/select_instance")
        client.predict(api_name="/accept")
    client.predict(api_name="/mark_reviewed")
    r = as_dict(client.predict(api_name="/review_reject_undecided"))
    assert project.image(image_id).review_state == "reviewed", r["status"]
    r = as_dict(client.predict(api_name="/reopen"))
    assert r["status"] == "image reopened (in progress)", r["status"]
    assert "in progress" in r["review_state"]


def test_a_deleted_proposal_stays_deleted_on_predict_again(fresh) -> None:
    """Delete (the API's /delete, the Del key's button) is a decision like reject: Predict again
    does not bring the object back."""
    project, client = fresh
    image_id = _fresh_image(project, client, 2)
    proposed = [a for a in project.store.annotations(image_id) if a.state == "proposed"]
    gone = proposed[0]
    client.predict(gone.id, api_name="/select_instance")
    assert "deleted" in as_dict(client.predict(api_name="/delete"))["status"]
    r = as_dict(client.predict(api_name="/predict"))
    assert "matched your decided annotations" in r["status"], r["status"]
    back = [a for a in project.store.annotations(image_id) if iou(a.mask, gone.mask) >= 0.5]
    assert back == [], [(a.id, a.state, iou(a.mask, gone.mask)) for a in back]


def test_a_new_mask_on_an_accepted_object_selects_it_instead_of_a_copy(fresh) -> None:
    """/add_mask (the new-mask and polygon tools' entry point) with a near-copy of an accepted
    object adds nothing and selects that object; two accepted copies made otherwise are flagged."""
    project, client = fresh
    image_id = _fresh_image(project, client, 0)
    target = next(a for a in project.store.annotations(image_id) if a.state == "proposed")
    client.predict(target.id, api_name="/select_instance")
    client.predict(api_name="/accept")
    client.predict("", api_name="/select_instance")
    before = len(project.store.annotations(image_id, include_rejected=True))
    copy = target.mask.copy()
    copy[np.nonzero(copy)[0][0], np.nonzero(copy)[1][0]] = False          # one pixel less: IoU > 0.99
    r = as_dict(client.predict(canvas.edit_value(copy), target_name := project.class_names()[0], api_name="/add_mask"))
    assert f"near-duplicate of #{target.id}" in r["status"], r["status"]
    assert len(project.store.annotations(image_id, include_rejected=True)) == before
    assert f"#{target.id} " in r["instance_info"]
    # a small mask inside the accepted object asks once; applied again it is another object
    client.predict("", api_name="/select_instance")
    ys, xs = np.nonzero(target.mask)
    inner = np.zeros_like(copy)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    inner[cy - 2:cy + 2, cx - 2:cx + 2] = True
    assert target.mask[inner].mean() >= 0.9
    r = as_dict(client.predict(canvas.edit_value(inner), target_name, api_name="/add_mask"))
    assert f"lies inside #{target.id}" in r["status"], r["status"]
    assert len(project.store.annotations(image_id, include_rejected=True)) == before
    r = as_dict(client.predict(canvas.edit_value(inner), target_name, api_name="/add_mask"))
    assert "added" in r["status"], r["status"]
    client.predict(api_name="/undo")
    # a copy stored another way (an import, another tool) is flagged like a proposal
    category = project.store.annotation(target.id).category_id
    twin = project.store.add_annotation(image_id, copy, category, source="human")
    r = as_dict(client.predict(0.05, api_name="/set_min_score"))
    flag = r["instance_table"]["headers"].index("flag")
    row = next(row for row in r["instance_table"]["data"] if row[0] in (twin, target.id) and row[flag])
    assert row[flag] in (f"dup of #{target.id}", f"dup of #{twin}"), target_name
