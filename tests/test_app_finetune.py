"""Fine-tune view through gradio_client against a real launched studio, a real store and real
worker processes: a run trains outside the server and is visible from a second client, test AP
before/after with intervals and typed curves are shown, a run on 2 test images never offers its
model (it says why) and *Use* / *Compare* have nothing to act on; the model picker labels and
warns about a version not shown better; a killed worker is reported, nothing is lost, Resume
continues from the last checkpoint and Stop ends the run with its best model (slow: about 50 s)."""
from __future__ import annotations

import os
import re
import signal
import time

import pytest
from gradio_client import Client

from app import train_view
from training.verdict import FEW_TEST_IMAGES_NOTE
from test_app_support import make_project, served


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """A served project of 5 images, all reviewed with the predictions that look right accepted."""
    project = make_project(tmp_path_factory.mktemp("finetune"), num_images=5, size=(128, 128))
    for entry in project.images():
        project.predict(entry.id)
        for inst in project.instances(entry.id):
            if inst.score is not None and inst.score >= 0.5:
                project.store.set_state(inst.id, "accepted")
        project.store.set_review_state(entry.id, "reviewed", undecided="reject")
    with served(project) as url:
        yield project, url


def poll(client: Client) -> dict:
    """One poll of the Fine-tune view, as its timer does."""
    names = ["progress", "loss_plot", "ap_plot", "metrics", "weights", "versions", "split", "start_from",
             "compare_pick"]
    out = dict(zip(names, client.predict(api_name="/finetune_poll")))
    out["phase"] = re.search(r'data-phase="(\w+)"', out["progress"]).group(1)
    return out


def poll_until(client: Client, phases: set[str], timeout: float = 240.0, seen: list | None = None) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        view = poll(client)
        if seen is not None:
            seen.append(view["phase"])
        if view["phase"] in phases:
            return view
        time.sleep(0.5)
    raise AssertionError(f"the run did not reach {phases}; last: {view['progress']}")


def test_run_in_a_worker_seen_by_a_second_client_then_used(studio) -> None:
    project, url = studio
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    parent = project.model.version
    view = poll(first)
    before = view["split"]   # no run yet: the sides the first run will give, not "0 to train on"
    assert ("**5 reviewed images**: 2 to train on, 1 for validation (chooses the checkpoint), 2 for testing "
            "(only measures: before and after)") in before, before
    assert "5 of them were reviewed since the last run" in before
    assert "only 2 test images: a run can measure the new model but not yet call it better" in before
    # the curves are typed numbers from the first (empty) frame on: categories were drawn until a reload
    for plot, y in (("loss_plot", "loss"), ("ap_plot", "AP")):
        assert view[plot]["datatypes"] == {"iteration": "quantitative", y: "quantitative", "series": "nominal"}
    assert not train_view.can_use(project, None) and not train_view.can_compare(None)
    message = first.predict(parent, 12, 0, 0, api_name="/finetune_start")[0]
    assert "started" in message, message
    assert "still" in first.predict(parent, 12, 0, 0, api_name="/finetune_start")[0]  # one run at a time
    run = project.store.list_training_runs(project.dataset_id)[-1]
    assert run.worker_pid is None or run.worker_pid != os.getpid()
    seen: list[str] = []
    view = poll_until(second, {"done", "stopped", "failed"}, seen=seen)   # the other browser sees it
    assert view["phase"] == "done", view["progress"]
    assert "running" in seen
    run = project.store.training_run(run.id)
    assert run.worker_pid not in (None, os.getpid())
    stored = project.store.image_splits(project.dataset_id)
    test = sorted(e.file_name for e in project.images() if stored[e.id] == "test")
    assert len(test) == 2 and "test images: " + ", ".join(f"`{n}`" for n in test) in before   # named beforehand
    assert sorted(run.report["test"]) == test
    verdict = train_view.verdict_of(run)
    assert verdict.before["segm/AP"].images == 2 and verdict.before["segm/AP"].text() in view["metrics"]
    assert "Test mask AP" in view["metrics"] and verdict.sentence in view["metrics"]
    assert f"*2 test images*: {FEW_TEST_IMAGES_NOTE}" in view["metrics"]
    assert {"AP", "AP50", "AP75"} <= {row[2] for row in view["ap_plot"]["data"]}
    assert "total (smoothed)" in {row[2] for row in view["loss_plot"]["data"]}
    assert run.dataset_revision and len(run.dataset_revision) == 64
    assert not verdict.better and not train_view.can_use(project, run)   # 2 test images never decide
    if run.model_version:  # a model was chosen: a version with its lineage, kept but not proposed
        version = project.store.model_version(run.model_version)
        assert version.parent == parent and version.dataset_revision == run.dataset_revision
        assert version.run_id == run.id and version.metrics["better"] is False and "could be luck" in run.message
        assert verdict.after["segm/AP"].text() in run.message and "kept as a version but not proposed" in run.message
        assert train_view.can_compare(run) and [n for n, _ in view["compare_pick"]["choices"]] == test
        assert "was not shown better" in first.predict(api_name="/finetune_use")
        assert project.model.version == parent
    else:
        assert "nothing new to offer: no checkpoint did better than the starting model on the 1" in run.message
        assert "stays the current model" in run.message and not train_view.can_compare(run)
        assert view["compare_pick"]["choices"] == []
        assert "no fine-tuned model" in first.predict(api_name="/finetune_use")


@pytest.mark.slow
def test_stop_then_kill_and_resume(studio) -> None:
    project, url = studio
    client = Client(url, verbose=False)
    client.predict(None, 400, 0, 0, api_name="/finetune_start")
    run_id = project.store.list_training_runs(project.dataset_id)[-1].id
    deadline = time.time() + 120
    while project.store.training_run(run_id).iteration < 12 and time.time() < deadline:
        time.sleep(0.5)
    record = project.store.training_run(run_id)
    assert record.status == "running" and record.iteration >= 12
    annotations_before = {e.id: len(project.instances(e.id)) for e in project.images()}
    os.kill(record.worker_pid, signal.SIGKILL)          # the worker dies without a word
    view = poll_until(client, {"killed"}, timeout=60)
    assert "stopped unexpectedly" in view["progress"] and "Resume continues from iteration" in view["progress"]
    assert {e.id: len(project.instances(e.id)) for e in project.images()} == annotations_before
    points = project.store.training_metrics(run_id, "loss")
    assert points and points[-1].iteration >= 10       # the curves survived
    assert "resumed" in client.predict(api_name="/finetune_resume")[0]
    deadline = time.time() + 120
    while project.store.training_run(run_id).report.get("resumed_from") is None and time.time() < deadline:
        time.sleep(0.5)
    resumed_from = project.store.training_run(run_id).report["resumed_from"]
    assert resumed_from >= 10 and resumed_from % 10 == 0    # continues from the last checkpoint
    while project.store.training_run(run_id).iteration <= resumed_from + 2 and time.time() < deadline:
        time.sleep(0.5)
    assert client.predict(api_name="/finetune_stop") == "stopping after this iteration ..."
    view = poll_until(client, {"stopped", "done", "failed"}, timeout=120)
    assert view["phase"] == "stopped", view["progress"]
    record = project.store.training_run(run_id)
    assert resumed_from < record.iteration < 400
    iterations = [p.iteration for p in project.store.training_metrics(run_id, "loss")]
    assert iterations == sorted(set(iterations))         # no point twice after the resume


def test_model_picker_shows_test_ap_and_warns_about_a_version_not_shown_better(studio) -> None:
    """A version registered by a run that could not show it better: the picker labels it with its
    test AP, interval and count, and says it was not shown better; switching to it asks first,
    giving the run's reason; nothing switches until the person confirms."""
    from app.session import SessionState
    from app.studio import Studio
    from training.bootstrap import Interval
    from training.verdict import Verdict
    from training.worker import version_metrics
    project, _ = studio
    ap = {"segm/AP": Interval(41.0, 20.5, 60.0, 6, 19)}
    verdict = Verdict({"segm/AP": Interval(35.0, 15.0, 55.0, 6, 19)}, ap, Interval(6.0, -4.0, 15.0, 6, 19), False,
                      "mask AP gain +6.0 [-4.0, +15.0] (6 images, 19 objects): the 95% interval includes zero")
    parent = project.model.version
    project.store.record_model_version("unproven", "/nowhere/unproven.safetensors", version_metrics(verdict),
                                       parent=parent)
    view, state = Studio(project), SessionState()
    label = dict((v, k) for k, v in view.model_choices())["unproven"]
    assert "test AP 41.0 [20.5, 60.0] (6 images, 19 objects)" in label and "not shown better" in label
    message = view.switch_model(state, "unproven")
    assert message.startswith(f"`unproven` was not shown better than `{parent}`: mask AP gain +6.0 [-4.0, +15.0]")
    assert state.asking == "switch" and project.model.version == parent
    rows = {row[0]: row for row in train_view.version_rows(project)}
    assert rows["unproven"][3] == ap["segm/AP"].text() and rows["unproven"][5].startswith("no: mask AP gain")
