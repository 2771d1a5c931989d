"""How the studio answers while a fine-tuning run trains: request round trips of ordinary
interactions (select an instance, move the confidence slider, open the next image) through
``gradio_client``, idle and then while a worker process trains. Used by
``tests/test_app_training_load.py`` and ``benchmarks/bench_app_training_load.py`` (a helper
module, no tests here).
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, List


@dataclass
class LoadTimes:
    """Round-trip times in milliseconds of the same interactions, idle and while training."""

    idle_ms: List[float]
    training_ms: List[float]
    iterations_during: int

    @property
    def ratio(self) -> float:
        """Median under load / median idle."""
        return statistics.median(self.training_ms) / statistics.median(self.idle_ms)

    def summary(self) -> str:
        med = statistics.median
        p90 = lambda xs: sorted(xs)[int(0.9 * (len(xs) - 1))]  # noqa: E731
        return (f"idle median {med(self.idle_ms):.0f} ms (p90 {p90(self.idle_ms):.0f}); while training median "
                f"{med(self.training_ms):.0f} ms (p90 {p90(self.training_ms):.0f}); ratio {self.ratio:.2f}; "
                f"{self.iterations_during} training iterations ran meanwhile (shared 2-core machine)")


def interactions(client: Any, image_ids: List[int], rounds: int) -> List[float]:
    """Time ``rounds`` cycles of: open an image, select its first instance, move the slider."""
    times = []
    for k in range(rounds):
        for call in (lambda: client.predict(image_ids[k % len(image_ids)], api_name="/open_image"),
                     lambda: client.predict(0.3 + 0.1 * (k % 3), api_name="/set_min_score"),
                     lambda: client.predict(None, api_name="/select_instance")):
            t0 = time.perf_counter()
            call()
            times.append(1000.0 * (time.perf_counter() - t0))
    return times


def measure(client: Any, project: Any, rounds: int = 8, iterations: int = 400) -> LoadTimes:
    """Idle times, then start a run and time the same while it trains (the run is stopped after)."""
    ids = [e.id for e in project.images()]
    for image_id in ids:          # predictions cached: no model pass inside the timed events
        project.predict(image_id)
        project.prediction(image_id)
    interactions(client, ids, len(ids))  # warm-up: every image opened and drawn once
    idle = interactions(client, ids, rounds)
    message = client.predict(None, iterations, 0, 0, api_name="/finetune_start")[0]
    if "started" not in message:
        raise RuntimeError(f"fine-tuning did not start: {message}")
    run_id = project.store.list_training_runs(project.dataset_id)[-1].id
    deadline = time.time() + 180
    while project.store.training_run(run_id).iteration < 2:    # the worker is training now
        if time.time() > deadline or project.store.training_run(run_id).status in ("failed", "killed"):
            raise RuntimeError(f"the run did not start training: {project.store.training_run(run_id).message}")
        time.sleep(0.5)
    first = project.store.training_run(run_id).iteration
    busy = interactions(client, ids, rounds)
    done = project.store.training_run(run_id).iteration - first
    client.predict(api_name="/finetune_stop")
    while project.store.training_run(run_id).status in ("created", "running") and time.time() < deadline + 120:
        time.sleep(0.5)
    return LoadTimes(idle, busy, done)
