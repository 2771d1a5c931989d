"""Fine-tune view: one click trains the current model (or any version) on the reviewed images in
a worker process, with live loss and validation AP curves, then reports before and after on the
test images (:mod:`training.split`, :mod:`training.verdict`): each AP with its 95% interval and
the images and objects it rests on, and whether the new model is better or the difference cannot
be told from noise. *Use the new model* acts only on a model shown better; *Compare* only when
the run made a model.

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
from app.project import Project, StudioError, ap_text, test_ap
from app.versions import VersionModels
from training.bootstrap import Interval
from training.split import MIN_TEST_IMAGES, choose_splits, image_key
from training.verdict import FEW_TEST_IMAGES, FEW_TEST_IMAGES_NOTE, Verdict

LOSS_SERIES = {"loss": "total (smoothed)", "loss_raw": "total (each iteration)", "proposal": "IA proposals",
               "ce": "class", "mask": "mask BCE", "dice": "dice", "l1": "box L1", "giou": "box GIoU"}
AP_SERIES = {"segm/AP": "AP", "segm/AP50": "AP50", "segm/AP75": "AP75"}
SIDES = {"train": "to train on", "val": "for validation (chooses the checkpoint)",
         "test": "for testing (only measures: before and after)"}
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
    """Make version ``name`` (default: the latest run's result, when it was shown better) the
    process's model."""
    from app.startup import load_model
    if not name:
        run = latest_run(project)
        if run is not None and run.model_version and not can_use(project, run):
            raise StudioError(f"`{run.model_version}` was not shown better than `{run.parent_version}`: "
                              f"{verdict_of(run).sentence}")
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
    """The three-way split of the reviewed images, for the person to see: the stored sides, and the
    sides that images reviewed since the last run will take when the next run starts (the same rule,
    :func:`training.split.choose_splits`; nothing is stored until then)."""
    splits = project.store.image_splits(project.dataset_id)
    reviewed = [e for e in project.images() if e.review_state == "reviewed"]
    if len(reviewed) < 2:
        return (f"**{len(reviewed)} reviewed images**: fine-tuning needs at least 2 (one is kept aside as a test "
                f"image to measure the model); mark images reviewed on the Correct tab (`M`)")
    upcoming = choose_splits({e.id: image_key(e) for e in reviewed}, splits,
                             assigned_keys={e.id: image_key(e) for e in project.images()})
    side = {e.id: splits.get(e.id) or upcoming.get(e.id) for e in reviewed}
    count = {k: sum(side[e.id] == k for e in reviewed) for k in SIDES}
    lines = [f"**{len(reviewed)} reviewed images**: " + ", ".join(f"{count[k]} {SIDES[k]}" for k in SIDES)
             + " (fixed per image: an image never changes side)"]
    if upcoming:
        lines.append(f"{len(upcoming)} of them were reviewed since the last run and take these sides when the "
                     f"next run starts")
    if not count["val"]:
        lines.append("no validation image yet: a run trains its whole schedule and keeps its last model")
    if count["test"] < MIN_TEST_IMAGES:
        lines.append(f"only {count['test']} test images: a run can measure the new model but not yet call it "
                     f"better (at least {MIN_TEST_IMAGES} are needed); keep reviewing")
    test = [e.file_name for e in reviewed if side[e.id] == "test"]
    lines.append("test images: " + ", ".join(f"`{n}`" for n in test[:40]) + (" …" if len(test) > 40 else ""))
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


def _curve_frame(rows: list[tuple[int, float, str]], y: str) -> pd.DataFrame:
    """Long-form rows with numeric columns even when empty: the plot takes its axis types from
    the first frame it is sent, and an empty frame's columns are untyped (strings), which made a
    project's first run draw every value as a category until a reload."""
    return pd.DataFrame({"iteration": pd.Series([r[0] for r in rows], dtype="int64"),
                         y: pd.Series([r[1] for r in rows], dtype="float64"),
                         "series": pd.Series([r[2] for r in rows], dtype="object")})


def loss_frame(project: Project, run: Any) -> pd.DataFrame:
    """The loss curves (smoothed total and parts, raw total) as long-form rows."""
    rows = []
    if run is not None:
        for point in project.store.training_metrics(run.id, "loss"):
            for key, label in LOSS_SERIES.items():
                if point.values.get(key) is not None:
                    rows.append((point.iteration, float(point.values[key]), label))
    return _curve_frame(rows, "loss")


def ap_frame(project: Project, run: Any) -> pd.DataFrame:
    """The validation AP curves (AP, AP50, AP75; iteration 0 = the starting model with a fresh
    head for classes it does not know): what chooses the checkpoint, not a result."""
    rows = []
    if run is not None:
        for point in project.store.training_metrics(run.id, "eval"):
            for key, label in AP_SERIES.items():
                if point.values.get(key) is not None:
                    rows.append((point.iteration, float(point.values[key]), label))
    return _curve_frame(rows, "AP")


def verdict_of(run: Any) -> Verdict | None:
    """The run's test-split figures and verdict (None until the worker has measured them)."""
    data = (run.metrics or {}).get("test") if run is not None else None
    return Verdict.from_dict(data) if data else None


def can_use(project: Project, run: Any) -> bool:
    """Whether *Use the new model* can act: the run made a model shown better than its parent,
    and the studio does not predict with it yet."""
    verdict = verdict_of(run)
    return bool(verdict and verdict.better and run.model_version and run.model_version != project.model.version)


def can_compare(run: Any) -> bool:
    """Whether there is a before and an after to compare: the run made a model."""
    return run is not None and bool(run.model_version)


def metrics_markdown(run: Any) -> str:
    """Test-split mask AP, overall and per class, of the starting model (before) and the chosen
    one (after), each with its 95% interval, the paired gain and the verdict."""
    verdict = verdict_of(run)
    if verdict is None:
        if run is None or not (run.report or {}).get("best"):
            return ""
        if not is_active(run):   # a run from before the test split, or one that failed before measuring
            return ("no test figures for this run: it ended before measuring, or ran before the studio kept test "
                    "images apart (its old held-out figures were measured on the images that chose its checkpoint)")
        best = run.report["best"]["iteration"]
        return (f"best checkpoint so far on the {len(run.report.get('val') or [])} validation images: iteration "
                f"{best}. The test images are measured when the run ends.")
    after = verdict.after or {}
    keys = ["segm/AP"] + sorted(k for k in verdict.before if k.startswith("segm/AP-"))
    out = [f"**Test mask AP**: {len((run.report or {}).get('test') or [])} images never trained on and never "
           f"used to choose anything; 95% bootstrap intervals over images\n",
           "| | before (the starting model as it is) | after (the chosen checkpoint) |", "|---|---|---|"]
    for k in keys:
        out.append(f"| {k.removeprefix('segm/')} | {ap_text(verdict.before.get(k))} | {ap_text(after.get(k))} |")
    if verdict.gain is not None:
        out.append(f"| gain (paired) | | {verdict.gain.text(signed=True)} |")
    chosen = (run.metrics or {}).get("chosen_iteration")
    out.append(f"\n**{'Better' if verdict.better else 'Not shown better'}**: {verdict.sentence}.")
    if verdict.before["segm/AP"].images < FEW_TEST_IMAGES:
        out.append(f"\n*{verdict.before['segm/AP'].images} test images*: {FEW_TEST_IMAGES_NOTE}.")
    if verdict.after is not None and chosen is not None:
        how = ("chosen on the validation images" if (run.report or {}).get("val")
               else "the last one: no validation image")
        out.append(f"\nafter = the checkpoint of iteration {chosen} ({how})")
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
    """Every model version with its lineage, its test AP and its parent's on the same images (with
    intervals), and whether it was offered as better (newest first)."""
    rows = []
    for v in reversed(project.store.list_model_versions()):
        m = v.metrics or {}
        current = " (current)" if v.name == project.model.version else ""
        parent = (m.get("test_before") or {}).get("segm/AP")
        offered = "" if "better" not in m else ("yes" if m["better"] else f"no: {m.get('verdict', '')}")
        rows.append([v.name + current, v.parent or "", (v.dataset_revision or "")[:12], ap_text(test_ap(v)),
                     ap_text(Interval.from_dict(parent) if parent else None), offered, v.run_id or "",
                     str(v.created_at)[:19]])
    return rows


VERSION_HEADERS = ["version", "started from", "dataset revision", "test AP", "parent's test AP", "offered as better",
                   "run", "created"]


def test_choices(project: Project, run: Any) -> list[tuple[str, int]]:
    """(file name, image id) of the run's test images."""
    if run is None:
        return []
    names = set((run.report or {}).get("test") or [])
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
