"""Fine-tune view through gradio_client: train on the reviewed corrections in a worker thread with
progress, stop a run, compare before/after, and swap the new model in (a real trainer, a real
store, a real launched app)."""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from gradio_client import Client

from fastinst.checkpoint import read_info
from test_app_support import make_project, served


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """A served project whose two images are reviewed, with some predictions accepted."""
    project = make_project(tmp_path_factory.mktemp("finetune"), num_images=2, size=(160, 224))
    for entry in project.images():
        project.predict(entry.id)
        for inst in project.instances(entry.id)[:2]:
            project.store.set_state(inst.id, "accepted")
        project.store.set_review_state(entry.id, "reviewed", undecided="reject")
    with served(project) as url:
        yield project, Client(url, verbose=False)


def poll_until(client: Client, phases: set[str], timeout: float = 240.0) -> tuple:
    """Poll the progress (as the page's timer does) until the run reaches one of ``phases``."""
    deadline = time.time() + timeout
    seen = []
    while time.time() < deadline:
        result = client.predict(api_name="/finetune_poll")
        phase = re.search(r'data-phase="(\w+)"', result[0]).group(1)
        seen.append(phase)
        if phase in phases:
            return result, seen
        time.sleep(0.5)
    raise AssertionError(f"fine-tuning did not reach {phases}; saw {seen[-5:]}")


def test_finetune_compare_and_use(studio) -> None:
    project, client = studio
    old_version = project.model.version
    assert "started" in client.predict(4, 1e-4, 1, api_name="/finetune_start")[0]
    assert "already" in client.predict(4, 1e-4, 1, api_name="/finetune_start")[0]  # one run at a time
    (progress, metrics, picker, compare, _), seen = poll_until(client, {"done", "failed"})
    assert 'data-phase="done"' in progress, progress
    assert "training" in seen or "comparing" in seen, "progress was reported while it ran"
    assert "width:100.0%" in progress
    assert "before (current)" in metrics and "after fine-tuning" in metrics
    assert {c[1] for c in picker["choices"]} == {e.id for e in project.images()}
    assert Path(compare).is_file()
    snap = project.work_dir / "finetune"
    final = sorted(snap.glob("run-*/model_final.safetensors"))[-1]
    info = read_info(final)
    assert info.provenance["iterations"] == 4 and info.class_names == project.class_names()

    message = client.predict(api_name="/finetune_use")
    assert "now predicting with" in message
    assert project.model.version != old_version and project.model.weights == final
    image_id = project.images()[0].id
    client.predict(image_id, api_name="/open_image")
    client.predict(api_name="/reopen")          # a reviewed image is never predicted again
    assert project.model.version in client.predict(api_name="/predict")[3]


def test_stop_ends_a_run_early_with_a_model(studio) -> None:
    project, client = studio
    client.predict(500, 1e-4, 1, api_name="/finetune_start")
    poll_until(client, {"training"}, timeout=120)
    deadline = time.time() + 60
    while project_iteration(client) < 1 and time.time() < deadline:
        time.sleep(0.3)
    assert client.predict(api_name="/finetune_stop") == "stopping"
    (progress, *_), _ = poll_until(client, {"stopped", "failed", "done"})
    assert 'data-phase="stopped"' in progress, progress
    final = sorted((project.work_dir / "finetune").glob("run-*/model_final.safetensors"))[-1]
    assert read_info(final).provenance["stopped_early"] is True
    assert read_info(final).provenance["iterations"] < 500


def project_iteration(client: Client) -> int:
    """The iteration the progress bar shows."""
    text = client.predict(api_name="/finetune_poll")[0]
    match = re.search(r"iteration (\d+)/", text)
    return int(match.group(1)) if match else 0
