"""Fine-tune view: one click trains the current model (or any version) on the reviewed images in
a worker process, with live loss and held-out AP curves, then compares before and after.

Everything the view shows is read from the store (``training_runs``, ``training_metrics``,
``model_versions``, ``image_splits``), so a reload or a second browser sees the same run, and the
web server never trains: :mod:`training.finetune` starts ``python -m training.worker``. A timer
polls the store once a second while a run is active; a worker that died is reported as killed
and can be resumed from its last checkpoint.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fastinst import visualize
from app.project import Project, StudioError
from app.versions import VersionModels
from training.split import choose_splits, image_key

LOSS_SERIES = {"loss": "total (smoothed)", "loss_raw": "total (each iteration)", "proposal": "IA proposals",
               "ce": "class", "mask": "mask BCE", "dice": "dice", "l1": "box L1", "giou": "box GIoU"}
AP_SERIES = {"segm/AP": "AP", "segm/AP50": "AP50", "segm/AP75": "AP75"}
COMPARE_MIN_SIDE = 512     # the before/after pictures are drawn at least this large


def latest_run(project: Project) -> Any:
    """The dataset's most recent run (its status refreshed: a dead worker becomes "killed"), or None."""
    from training.finetune import refresh_run
    runs = project.store.list_training_runs(project.dataset_id)
    return refresh_run(project.store, runs[-1].id) if runs else None


def is_active(run: Any) -> bool:
    """True while a run is starting or training."""
    return run is not None and run.status in ("created", "running")


# ---------------------------------------------------------------------------------- actions

def start(project: Project, start_from: str | None, iterations: float = 0, lr: float = 0, batch: float = 0) -> str:
    """Start a run from version ``start_from`` (default: the current model) with the one-click
    defaults, each overridden by a non-zero setting; returns a message."""
    from training.finetune import Overrides, launch_worker, prepare_run
    run = latest_run(project)
    if is_active(run):
        raise StudioError(f"run {run.id} is still {run.status}: stop it first, or wait for it")
    name = start_from or project.model.version
    record = project.store.model_version(name)
    if record is None or not record.path:
        raise StudioError(f"model version {name!r} has no checkpoint to start from")
    if name == project.model.version:
        preset = project.model.preset
    elif record.path.endswith(".safetensors"):
        from engines.load import checkpoint_preset
        preset = checkpoint_preset(record.path)
    else:
        raise StudioError(f"{name!r} is an official checkpoint: start the studio with it (--weights) to fine-tune it")
    from engines.load import weights_model
    device = "cuda" if project.model.device.type == "cuda" else "cpu"
    overrides = Overrides(max_iters=int(iterations) or None, lr=float(lr) or None, batch_size=int(batch) or None)
    try:
        run_id = prepare_run(project.store, project.dataset_id, parent_version=name, parent_path=record.path,
                             preset=str(preset), work_dir=project.work_dir, device=device, overrides=overrides,
                             model=weights_model(record.path, preset))
    except ValueError as e:
        raise StudioError(str(e)) from None
    launch_worker(project.store, run_id)
    return f"run {run_id} started from `{name}`: {project.store.training_run(run_id).report['defaults']}"


def stop(project: Project) -> str:
    """Ask the active run to stop after its current iteration (it keeps its best model)."""
    from training.finetune import request_stop
    run = latest_run(project)
    if not is_active(run) or not request_stop(project.store, run.id):
        return "no fine-tuning run in progress"
    return "stopping after this iteration ..."


def resume(project: Project) -> str:
    """Continue the latest run from its last checkpoint (after it was killed, failed or stopped)."""
    from training.finetune import resume_run
    run = latest_run(project)
    if run is None:
        return "no run to resume"
    try:
        resume_run(project.store, run.id)
    except ValueError as e:
        raise StudioError(str(e)) from None
    return f"run {run.id} resumed"


def use_version(project: Project, name: str | None) -> str:
    """Make version ``name`` (default: the latest run's result) the process's model."""
    from app.startup import load_model
    if not name:
        run = latest_run(project)
        name = run.model_version if run is not None else None
    record = project.store.model_version(name) if name else None
    if record is None or not record.path:
        raise StudioError("no fine-tuned model to use yet")
    if name == project.model.version:
        return f"already predicting with `{name}`"
    slot = load_model(Path(record.path), project.model.preset if not record.path.endswith(".safetensors") else None,
                      str(project.model.device))
    project.model.swap(slot)
    project.sync_categories()
    return (f"now predicting with `{slot.version}`: unreviewed images get its proposals when opened "
            f"(or press 'Predict again')")


# ----------------------------------------------------------------------------------- display

def split_markdown(project: Project) -> str:
    """The held-out split of the reviewed images, for the person to see: the stored sides, and the
    sides that images reviewed since the last run will take when the next run starts (the same rule,
    :func:`training.split.choose_splits`; nothing is stored until then)."""
    splits = project.store.image_splits(project.dataset_id)
    reviewed = [e for e in project.images() if e.review_state == "reviewed"]
    if len(reviewed) < 2:
        return (f"**{len(reviewed)} reviewed images**: fine-tuning needs at least 2 (one is held out to measure "
                f"the model); mark images reviewed on the Correct tab (`M`)")
    upcoming = choose_splits({e.id: image_key(e) for e in reviewed}, splits,
                             assigned_keys={e.id: image_key(e) for e in project.images()})
    side = {e.id: splits.get(e.id) or upcoming.get(e.id) for e in reviewed}
    held = [e.file_name for e in reviewed if side[e.id] == "heldout"]
    train = sum(side[e.id] == "train" for e in reviewed)
    lines = [f"**{len(reviewed)} reviewed images**: {train} to train on, {len(held)} held out to measure "
             f"the model (fixed per image: an image never changes side)"]
    if upcoming:
        lines.append(f"{len(upcoming)} of them were reviewed since the last run and take these sides when the "
                     f"next run starts")
    lines.append("held out: " + ", ".join(f"`{n}`" for n in held[:40]) + (" …" if len(held) > 40 else ""))
    return "\n\n".join(lines)


def progress_html(run: Any) -> str:
    """Progress bar and one status line (``data-phase`` = the run's status, ``data-run`` = its id)."""
    if run is None:
        return ('<div class="ft-progress" data-phase="idle" data-run=""><div class="ft-bar">'
                '<div class="ft-fill" style="width:0%"></div></div><div class="ft-text">no run yet</div></div>')
    total = run.max_iters or 0
    pct = 100.0 * run.iteration / total if total else 0.0
    text = html.escape(run.message or "")
    return (f'<div class="ft-progress" data-phase="{run.status}" data-run="{run.id}">'
            f'<div class="ft-bar"><div class="ft-fill" style="width:{pct:.1f}%"></div></div>'
            f'<div class="ft-text"><b>run {run.id} · {run.status}</b> · iteration {run.iteration}/{total} · {text}</div></div>')


def loss_frame(project: Project, run: Any) -> pd.DataFrame:
    """The loss curves (smoothed total and parts, raw total) as long-form rows."""
    rows = []
    if run is not None:
        for point in project.store.training_metrics(run.id, "loss"):
            for key, label in LOSS_SERIES.items():
                if point.values.get(key) is not None:
                    rows.append((point.iteration, float(point.values[key]), label))
    return pd.DataFrame(rows, columns=["iteration", "loss", "series"])


def ap_frame(project: Project, run: Any) -> pd.DataFrame:
    """The held-out AP curves (AP, AP50, AP75; iteration 0 = the starting model)."""
    rows = []
    if run is not None:
        for point in project.store.training_metrics(run.id, "eval"):
            for key, label in AP_SERIES.items():
                if point.values.get(key) is not None:
                    rows.append((point.iteration, float(point.values[key]), label))
    return pd.DataFrame(rows, columns=["iteration", "AP", "series"])


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{float(value):.1f}"


def metrics_markdown(run: Any) -> str:
    """Held-out mask AP, AP50, AP75 and per-class AP before (the starting model) and after (the
    best model of the run)."""
    if run is None:
        return ""
    report = run.report or {}
    before = report.get("before") or {}
    after = {k: v for k, v in (report.get("best") or {}).items() if k != "iteration"}
    if not before and not after:
        return ""
    keys = ["segm/AP", "segm/AP50", "segm/AP75"] + sorted({k for k in [*before, *after] if k.startswith("segm/AP-")})
    n = len(report.get("heldout") or [])
    out = [f"**Held-out mask AP** ({n} images never trained on)\n", "| metric | before | after |", "|---|---|---|"]
    for k in keys:
        out.append(f"| {k.removeprefix('segm/')} | {_fmt(before.get(k))} | {_fmt(after.get(k))} |")
    best = report.get("best") or {}
    if best.get("iteration"):
        out.append(f"\nafter = the best model of the run (iteration {best['iteration']}); it is kept even if later "
                   f"iterations got worse")
    return "\n".join(out)


def weights_markdown(run: Any) -> str:
    """What happened to the starting weights: loaded strictly, class rows by name, or (a released
    checkpoint on other classes) each skipped tensor with both shapes."""
    init = (run.report or {}).get("init_weights") if run is not None else None
    if not init:
        return ""
    notes = init.get("notes") or []
    return "\n".join([f"**Starting weights** `{Path(str(init.get('init_weights', ''))).name}`: {init.get('how')}"]
                     + [f"- {html.escape(str(line))}" for line in notes])


def version_rows(project: Project) -> list[list[Any]]:
    """Every model version with its lineage and held-out AP (newest first)."""
    rows = []
    for v in reversed(project.store.list_model_versions()):
        m = v.metrics or {}
        current = " (current)" if v.name == project.model.version else ""
        rows.append([v.name + current, v.parent or "", (v.dataset_revision or "")[:12],
                     _fmt((m.get("held_out") or {}).get("segm/AP")),
                     _fmt((m.get("held_out_before") or {}).get("segm/AP")), v.run_id or "", str(v.created_at)[:19]])
    return rows


VERSION_HEADERS = ["version", "started from", "dataset revision", "held-out AP", "parent's AP", "run", "created"]


def heldout_choices(project: Project, run: Any) -> list[tuple[str, int]]:
    """(file name, image id) of the run's held-out images."""
    if run is None:
        return []
    names = set((run.report or {}).get("heldout") or [])
    return [(e.file_name, e.id) for e in project.images() if e.file_name in names]


# -------------------------------------------------------------------------------- comparison

def match_instances(a: Any, b: Any, iou: float = 0.5) -> tuple[set[int], set[int]]:
    """Indices of ``a``'s and ``b``'s instances that have a same-class partner in the other
    prediction at mask IoU >= ``iou`` (greedy by score)."""
    used_b: set[int] = set()
    kept_a: set[int] = set()
    for i in range(len(a)):
        best, best_j = iou, None
        for j in range(len(b)):
            if j in used_b or a.class_names[int(a.classes[i])] != b.class_names[int(b.classes[j])]:
                continue
            inter = np.logical_and(a.masks[i], b.masks[j]).sum()
            union = np.logical_or(a.masks[i], b.masks[j]).sum()
            if union and inter / union >= best:
                best, best_j = inter / union, j
        if best_j is not None:
            kept_a.add(i)
            used_b.add(best_j)
    return kept_a, used_b


def render_comparison(image: np.ndarray, before: Any, after: Any, min_score: float,
                      titles: tuple[str, str] = ("before", "after"),
                      words: tuple[str, str] = ("gone", "new")) -> np.ndarray:
    """The same image twice, large: ``before``'s instances left, ``after``'s right. Instances
    without a same-class partner (IoU >= 0.5) on the other side are outlined thickly: red on the
    left (gone after fine-tuning), green on the right (new); ``words`` name the two counts."""
    b, a = before.filter(min_score), after.filter(min_score)
    kept_b, kept_a = match_instances(b, a)
    k = visualize.display_factor(*image.shape[:2], min_side=COMPARE_MIN_SIDE)
    big = visualize.enlarge(image, k)
    tiles = []
    for pred, kept, title, mark, word in ((b, kept_b, titles[0], (230, 40, 40), words[0]),
                                          (a, kept_a, titles[1], (40, 210, 60), words[1])):
        masks = visualize.enlarge_masks(pred.masks, k) if len(pred) else pred.masks
        labels = [f"{pred.class_names[int(c)]} {s:.2f}" for c, s in zip(pred.classes, pred.scores)]
        tile = visualize.overlay_instances(big, masks, [visualize.colour_for(i) for i in range(len(pred))], labels)
        changed = [i for i in range(len(pred)) if i not in kept]
        for i in changed:
            visualize._draw_outline(tile, masks[i], mark, 4)
        visualize.title_bar(tile, f"{title}: {len(pred)} instances >= {min_score:.2f}, {len(changed)} {word}")
        tiles.append(tile)
    gap = np.full((big.shape[0], 12, 3), 255, np.uint8)
    return np.concatenate([tiles[0], gap, tiles[1]], axis=1)


def compare(project: Project, models: VersionModels, image_id: int, min_score: float) -> np.ndarray:
    """Before/after picture of the latest run's parent (left) and result (right) on one image."""
    run = latest_run(project)
    if run is None or not run.model_version:
        raise StudioError("no finished run with a new model to compare yet")
    image = project.pixels(image_id)
    before = models.predict(run.parent_version, image_id)
    after = models.predict(run.model_version, image_id)
    return render_comparison(image, before, after, min_score)
