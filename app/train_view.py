"""Fine-tune: train the current model on the reviewed corrections, with progress and a stop
button, then compare the model before and after (mask AP on the reviewed images, and the two
models' predictions side by side) and swap the new one in.

The run happens in a worker thread owned by a ``FineTuneJob`` (one per process, shared by every
session); the UI polls ``job.snapshot()`` with a timer. ``training.train`` polls ``should_stop``
after every iteration, so Stop ends the run cleanly with a usable model.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app import render
from app.project import Project, StudioError

COMPARE_MAX_IMAGES = 6


@dataclass(frozen=True)
class JobSnapshot:
    """What the UI shows about a fine-tuning run at one moment."""

    phase: str = "idle"          # idle | exporting | evaluating | training | comparing | done | stopped | failed
    iteration: int = 0
    total: int = 0
    loss: float | None = None
    message: str = ""
    checkpoint: str | None = None
    ap_before: float | None = None
    ap_after: float | None = None
    compare_ids: tuple[int, ...] = ()
    started: float = 0.0

    @property
    def running(self) -> bool:
        """True while the worker thread is busy."""
        return self.phase in ("exporting", "evaluating", "training", "comparing")


@dataclass
class FineTuneSettings:
    """What the person can choose before starting."""

    iterations: int = 100
    lr: float = 1e-4
    batch_size: int = 2


@dataclass
class FineTuneJob:
    """The process's fine-tuning run: a worker thread, its progress, and a stop flag."""

    snapshot_: JobSnapshot = field(default_factory=JobSnapshot)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    after: dict[int, Any] = field(default_factory=dict)   # image id -> Prediction of the new model
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> JobSnapshot:
        """The current state (immutable copy)."""
        with self.lock:
            return self.snapshot_

    def update(self, **changes: Any) -> None:
        """Change some fields of the state."""
        with self.lock:
            self.snapshot_ = replace(self.snapshot_, **changes)

    def start(self, project: Project, settings: FineTuneSettings) -> str:
        """Start a run in a worker thread; refuses while one is running."""
        if self.snapshot().running:
            raise StudioError("a fine-tuning run is already in progress")
        if project.model.weights is None:
            raise StudioError("the current model has no weights file to start from")
        self.stop_event.clear()
        self.after = {}
        self.update(**{**JobSnapshot().__dict__, "phase": "exporting", "started": time.time(),
                       "total": settings.iterations, "message": "exporting the reviewed annotations"})
        self.thread = threading.Thread(target=self._run, args=(project, settings), daemon=True,
                                       name="fastinst-finetune")
        self.thread.start()
        return "fine-tuning started"

    def stop(self) -> str:
        """Ask the run to stop after the current iteration (it still saves a model)."""
        if not self.snapshot().running:
            return "no fine-tuning run in progress"
        self.stop_event.set()
        self.update(message="stopping after this iteration ...")
        return "stopping"

    def _run(self, project: Project, settings: FineTuneSettings) -> None:
        """Worker: export -> AP before -> train -> compare; every failure ends in phase failed."""
        try:
            train_json, image_root, ids = export_training_set(project)
            self.update(phase="evaluating", message=f"measuring the current model on {len(ids)} reviewed images")
            before = mask_ap(project.model.weights, train_json, image_root, project.model.device)
            self.update(phase="training", ap_before=before, message="training")
            ckpt = self._train(project, settings, train_json, image_root)
            stopped = self.stop_event.is_set()
            self.update(phase="comparing", checkpoint=str(ckpt), message="comparing the models")
            after = mask_ap(ckpt, train_json, image_root, project.model.device)
            self.after = predict_with(ckpt, project, ids[:COMPARE_MAX_IMAGES])
            self.update(phase="stopped" if stopped else "done", ap_after=after,
                        compare_ids=tuple(ids[:COMPARE_MAX_IMAGES]),
                        message="stopped early; the model so far is ready to compare" if stopped
                        else "done: compare below, then use the new model if it is better")
        except Exception as e:  # noqa: BLE001 - the worker reports every failure to the UI
            traceback.print_exc()
            self.update(phase="failed", message=f"fine-tuning failed: {e}")

    def _train(self, project: Project, settings: FineTuneSettings, train_json: Path, image_root: Path) -> Path:
        """Run ``training.train`` from the current weights, reporting every iteration."""
        from training import TrainConfig, train
        run_dir = project.work_dir / "finetune" / time.strftime("run-%Y%m%d-%H%M%S")
        config = TrainConfig(train_json=str(train_json), image_root=str(image_root),
                             preset=project.model.preset, init_weights=str(project.model.weights),
                             output_dir=str(run_dir), max_iters=settings.iterations,
                             batch_size=settings.batch_size, lr=settings.lr, warmup_iters=0,
                             device=str(project.model.device), num_workers=0, progress_bar=False,
                             checkpoint_period=0, eval_period=0, resume=False, keep_empty_images=True)

        def progress(it: int, total: int, metrics: dict[str, float]) -> None:
            self.update(iteration=it, total=total, loss=float(metrics.get("loss", float("nan"))),
                        message=f"iteration {it}/{total}")
        return train(config, progress=progress, should_stop=self.stop_event.is_set)


def export_training_set(project: Project) -> tuple[Path, Path, list[int]]:
    """The reviewed images' accepted annotations as COCO JSON -> (json, image root, image ids)."""
    reviewed = [e.id for e in project.images() if e.review_state == "reviewed"]
    if not reviewed:
        raise StudioError("no reviewed images yet: correct some images and mark them reviewed first")
    path = project.export_coco(only_reviewed=True)
    root = project.store.dataset(project.dataset_id).image_root
    return path, root, reviewed


def mask_ap(weights: Path | str, json_path: Path, image_root: Path, device: Any) -> float | None:
    """COCO mask AP (0-100) of a checkpoint on a COCO file, or None if it cannot be measured."""
    from training.evaluate import evaluate
    if not str(weights).endswith(".safetensors"):
        return None
    metrics = evaluate(weights, json_path, image_root, device=str(device), progress=False)
    value = metrics.get("segm/AP")
    return None if value is None or np.isnan(value) else float(value)


def predict_with(weights: Path, project: Project, image_ids: list[int]) -> dict[int, Any]:
    """Predictions of another checkpoint on a few images, without replacing the process model."""
    from fastinst import Predictor
    predictor = Predictor.from_checkpoint(weights, device=project.model.device)
    out = {i: predictor.predict(project.pixels(i)) for i in image_ids}
    del predictor
    return out


def progress_html(snap: JobSnapshot) -> str:
    """An HTML progress bar with a one-line status (the element ids are used by tests)."""
    pct = 100.0 * snap.iteration / snap.total if snap.total else 0.0
    if snap.phase in ("done", "stopped"):
        pct = max(pct, 100.0 if snap.phase == "done" else pct)
    loss = f" · loss {snap.loss:.3f}" if snap.loss is not None else ""
    elapsed = f" · {time.time() - snap.started:.0f}s" if snap.started and snap.running else ""
    return (f'<div class="ft-progress" data-phase="{snap.phase}">'
            f'<div class="ft-bar"><div class="ft-fill" style="width:{pct:.1f}%"></div></div>'
            f'<div class="ft-text"><b>{snap.phase}</b> · {snap.message}{loss}{elapsed}</div></div>')


def metrics_markdown(snap: JobSnapshot) -> str:
    """Before/after mask AP on the reviewed images, once known."""
    if snap.ap_before is None and snap.ap_after is None:
        return ""
    fmt = lambda v: "—" if v is None else f"{v:.1f}"  # noqa: E731
    return ("| model | mask AP on the reviewed images |\n|---|---|\n"
            f"| before (current) | {fmt(snap.ap_before)} |\n| after fine-tuning | {fmt(snap.ap_after)} |\n\n"
            "These are the images it was fine-tuned on: a sanity check, not a held-out score.")


def render_comparison(image: np.ndarray, before: Any, after: Any, min_score: float) -> np.ndarray:
    """The two models' predictions on one image side by side (before left, after right)."""
    tiles = []
    for pred, title in ((before, "before"), (after, "after")):
        p = pred.filter(min_score)
        labels = [f"{p.class_names[int(c)]} {s:.2f}" for c, s in zip(p.classes, p.scores)]
        tile = render.overlay_instances(image, p.masks, [render.colour_for(k) for k in range(len(p))], labels)
        render.title_bar(tile, f"{title}: {len(p)} instances >= {min_score:.2f}")
        tiles.append(tile)
    gap = np.full((image.shape[0], 8, 3), 255, np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1]], axis=1)


def use_checkpoint(project: Project, path: Path) -> str:
    """Make a fine-tuned checkpoint the process's model (every session predicts with it now)."""
    from app.startup import load_model
    slot = load_model(Path(path), None, str(project.model.device))
    project.model.swap(slot)
    if slot.version not in {m.name for m in project.store.list_model_versions()}:
        project.store.record_model_version(slot.version, str(path))
    project.sync_categories()
    return (f"now predicting with `{slot.version}`: unreviewed images get its proposals when opened "
            f"(or press 'Predict again')")
