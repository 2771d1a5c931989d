"""The studio answers while a run trains: the same interactions through ``gradio_client``, idle
and while a worker process trains (its iterations advance meanwhile), stay quick."""
from __future__ import annotations

import statistics

from gradio_client import Client

from test_app_support import make_project, served
from load_check import measure


def test_server_answers_while_training(tmp_path) -> None:
    project = make_project(tmp_path, num_images=3, size=(128, 128))
    for entry in project.images():
        project.store.set_review_state(entry.id, "reviewed")
    with served(project) as url:
        times = measure(Client(url, verbose=False), project, rounds=4)
    print("\n" + times.summary())
    assert times.iterations_during >= 1, "the run trained while the server answered"
    assert project.store.list_training_runs(project.dataset_id)[-1].status == "stopped"
    # on a 2-core machine shared with other jobs the worker takes one core; the server the other
    assert statistics.median(times.training_ms) < max(4 * statistics.median(times.idle_ms), 1000.0), times.summary()
