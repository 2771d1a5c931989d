"""Fine-tuning runs kept in the annotation store, trained by a worker process.

The studio (or the CLI) calls :func:`prepare_run`: it fixes the three-way split of the reviewed
images (:mod:`training.split`: train, validation, test), exports the three COCO files, hashes the
exact annotation set (the dataset revision), picks the one-click defaults and records the run. :func:`launch_worker` starts
``python -m training.worker`` (through ``torchrun`` on all GPUs when there are several), which
trains and writes status, progress, curves and the resulting model version into the store.
Every process reading the store sees the same run; :func:`refresh_run` notices a worker that
died (killed, out of memory) and marks the run ``killed``; :func:`resume_run` starts a new
worker that continues from the run's last checkpoint.
"""
from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from .defaults import finetune_defaults
from .split import TEST, TRAIN, VAL, choose_splits, image_key
from .trainer import TrainConfig

STALE_HEARTBEAT_S = 120.0     # a worker on another host counts as dead after this silence
STORE_URL_ENV = "FASTINST_STORE_URL"
ACTIVE = ("created", "running")
RESUMABLE = ("killed", "failed", "stopped")
WORKERS: Dict[int, subprocess.Popen] = {}   # run id -> the worker this process started


@dataclass(frozen=True)
class Overrides:
    """What the person changed in the folded-away settings (None = the default)."""

    max_iters: Optional[int] = None
    lr: Optional[float] = None
    batch_size: Optional[int] = None


def version_name(path: str | Path) -> str:
    """A model version name for a weights file: its stem and the first 10 hex digits of its SHA-256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"{Path(path).stem}@{digest.hexdigest()[:10]}"


def dataset_revision(splits: Dict[str, Dict[str, Any]]) -> str:
    """SHA-256 of the exact annotation set of a run (``splits``: split name -> its COCO dict): per
    image its file name, size, content hash and split; per annotation its image, category name,
    RLE counts and crowd flag; the category names. Ids, dates and order do not count."""
    images: List[Any] = []
    anns: List[Any] = []
    categories: set[str] = set()
    for split, coco in splits.items():
        names = {c["id"]: c["name"] for c in coco["categories"]}
        files = {im["id"]: im["file_name"] for im in coco["images"]}
        categories |= set(names.values())
        images += [[im["file_name"], im["height"], im["width"], im.get("content_hash"), split] for im in coco["images"]]
        anns += [[files[a["image_id"]], names[a["category_id"]], json.dumps(a["segmentation"], sort_keys=True),
                  int(a.get("iscrowd", 0))] for a in coco["annotations"]]
    body = {"categories": sorted(categories), "images": sorted(images), "annotations": sorted(anns)}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def split_coco(coco: Dict[str, Any], keep: set[int]) -> Dict[str, Any]:
    """The COCO dict restricted to the images with COCO ids in ``keep`` (categories all kept)."""
    return {**coco, "images": [im for im in coco["images"] if im["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}


def worker_threads() -> int:
    """CPU threads for a worker: all cores but one, so that the studio keeps answering."""
    return max(1, (os.cpu_count() or 2) - 1)


def prepare_run(store: Any, dataset_id: int, *, parent_version: str, parent_path: str | Path, preset: str,
                work_dir: str | Path, device: str = "auto", overrides: Overrides = Overrides(),
                model: str = "fastinst") -> int:
    """Record a fine-tuning run of ``parent_version`` (a ``model``: "fastinst" or "queryinst",
    :func:`engines.load.weights_model` tells) on the dataset's reviewed images; returns its id.

    Writes ``work_dir/finetune/run-NNNN/{reviewed,train,val,test}.json`` (:mod:`training.split`).
    The trainer is given ``train.json`` to learn from and ``val.json`` to choose with (early
    stopping, the checkpoint kept); ``test.json`` is only read by the worker after training, to
    report before and after (:mod:`training.verdict`). Without validation images (two reviewed
    images) nothing is chosen: the fixed schedule runs to its end and its last model is kept.

    Raises:
        ValueError: fewer than two reviewed images, or no training image left.
    """
    records = store.list_images(dataset_id)
    reviewed = [r for r in records if r.review_state == "reviewed"]
    if len(reviewed) < 2:
        raise ValueError(f"fine-tuning needs at least 2 reviewed images (one is kept aside as a test image to "
                         f"measure the model); {len(reviewed)} reviewed so far")
    keys = {r.id: image_key(r) for r in reviewed}
    every_key = {r.id: image_key(r) for r in records}
    splits = store.assign_image_splits(dataset_id, lambda existing: choose_splits(keys, existing,
                                                                                   assigned_keys=every_key))
    # a picture on two sides under two names (sides given before they were kept together) counts
    # on the side that learns the most from it: a test AP must not be measured on a picture the
    # model trained on, nor a checkpoint be chosen on one
    ids: Dict[str, set[int]] = {TRAIN: set(), VAL: set(), TEST: set()}
    seen: set[str] = set()
    for side in (TRAIN, VAL, TEST):
        chosen = [r for r in reviewed if splits[r.id] == side and keys[r.id] not in seen]
        ids[side] = {r.coco_id for r in chosen}
        seen |= {keys[r.id] for r in chosen}
    if not ids[TRAIN]:
        raise ValueError("no reviewed image is in the training split yet; review more images to train on")
    run_id = store.record_training_run(f"finetune-{parent_version}", dataset_id=dataset_id,
                                       parent_version=parent_version)
    out = Path(work_dir) / "finetune" / f"run-{run_id:04d}"
    out.mkdir(parents=True, exist_ok=True)
    coco = json.loads(store.export_coco(dataset_id, out / "reviewed.json", only_reviewed=True).read_text())
    hashes = {r.coco_id: r.content_hash for r in reviewed}
    for im in coco["images"]:
        im["content_hash"] = hashes.get(im["id"])
    parts = {side: split_coco(coco, ids[side]) for side in (TRAIN, VAL, TEST)}
    for side, part in parts.items():
        (out / f"{side}.json").write_text(json.dumps(part))
    validate = bool(ids[VAL])
    d = finetune_defaults(len(ids[TRAIN]), preset)
    batch, iters = overrides.batch_size or d.batch_size, overrides.max_iters or d.max_iters
    d = dataclasses.replace(d, max_iters=iters, batch_size=batch, lr=overrides.lr or d.lr,
                            epochs=iters * batch / len(ids[TRAIN]))     # what will run, said as it is
    recipe = {}
    if model == "queryinst":   # the official optimiser settings (training.queryinst_trainer)
        from .queryinst_trainer import OFFICIAL, TINY
        recipe = {k: (TINY if preset == "tiny" else OFFICIAL)[k] for k in ("weight_decay", "clip_grad_norm")}
    image_root = str(store.dataset(dataset_id).image_root)
    fields = d.train_fields()    # the one-click recipe (training.defaults), as the benchmark runs it
    if not validate:              # nothing to choose on: the whole schedule runs, its last model kept
        fields.update(eval_period=0, early_stop_patience=0)
    config = TrainConfig(
        model=model, train_json=str(out / "train.json"), image_root=image_root,
        val_json=str(out / "val.json") if validate else None, val_image_root=image_root, preset=preset,
        init_weights=str(parent_path), output_dir=str(out), device=device, num_workers=0,
        num_threads=worker_threads(), progress_bar=False, eval_batch_size=4, eval_at_start=validate,
        keep_best=validate, seed=0, resume=True, keep_empty_images=True, **fields, **recipe)
    defaults = d.describe() if validate else (
        f"{d.max_iters} iterations of {d.batch_size} images (~{d.epochs:.0f} passes), lr {d.lr:g}; no validation "
        f"image yet, so nothing is chosen: the whole schedule runs and its last model is kept")
    report = {side: sorted(im["file_name"] for im in part["images"]) for side, part in parts.items()}
    report["defaults"] = defaults
    store.update_training_run(run_id, path=str(out), config=config.to_dict(), max_iters=config.max_iters,
                              report=report, dataset_revision=dataset_revision(parts))
    return run_id


def worker_command(run_id: int, gpus: int = 0) -> List[str]:
    """The command line of a worker: plain Python, or ``torchrun`` with one process per GPU."""
    module = ["-m", "training.worker", "--run", str(run_id)]
    if gpus > 1:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", *module]
    return [sys.executable, *module]


def launch_worker(store: Any, run_id: int, gpus: Optional[int] = None) -> subprocess.Popen:
    """Start the worker of a run in its own process session; its output goes to the run's
    ``worker.log``. ``gpus`` defaults to every visible CUDA device when the run uses CUDA."""
    record = store.training_run(run_id)
    if gpus is None:
        gpus = _visible_gpus(str((record.config or {}).get("device", "auto")))
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, STORE_URL_ENV: store.url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    log = open(Path(record.path) / "worker.log", "ab")
    try:
        # same working directory as the caller: relative store and run paths mean the same files
        proc = subprocess.Popen(worker_command(run_id, gpus), stdout=log, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
    finally:
        log.close()
    WORKERS[run_id] = proc
    return proc


def _visible_gpus(device: str) -> int:
    if device not in ("auto", "cuda"):
        return 0
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_alive(record: Any) -> bool:
    """Whether the run's worker still runs: the process this studio started, else the pid on
    this host (a zombie counts as dead), else a heartbeat younger than STALE_HEARTBEAT_S."""
    from annotations.registry import heartbeat_age
    proc = WORKERS.get(record.id)
    if proc is not None:
        return proc.poll() is None
    if record.worker_pid and record.worker_host == socket.gethostname():
        try:
            state = Path(f"/proc/{record.worker_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            return state not in ("Z", "X")
        except (OSError, IndexError):
            return False
    age = heartbeat_age(record)
    if age is None:  # never started: give a worker that is still importing a minute
        from annotations.schema import utc_now
        started = record.updated_at or record.created_at
        now = utc_now() if started.tzinfo else utc_now().replace(tzinfo=None)
        return (now - started).total_seconds() < 60
    return age < STALE_HEARTBEAT_S


def refresh_run(store: Any, run_id: int) -> Any:
    """The run's record, after marking it ``killed`` if its worker died without saying so."""
    record = store.training_run(run_id)
    if record.status in ACTIVE and not worker_alive(record):
        period = int((record.config or {}).get("checkpoint_period") or 0)
        resumable = (record.iteration // period) * period if period else 0
        message = (f"the worker process stopped unexpectedly at iteration {record.iteration} (killed or out of "
                   f"memory). Nothing in the store was lost; Resume continues from iteration {resumable}.")
        store.update_training_run(run_id, status="killed", message=message, expect_status=ACTIVE)
        record = store.training_run(run_id)
    return record


def request_stop(store: Any, run_id: int) -> bool:
    """Ask the run's worker to stop after its current iteration (it saves a checkpoint and a model)."""
    return store.update_training_run(run_id, report={"stop_requested": True}, expect_status=ACTIVE)


def resume_run(store: Any, run_id: int) -> subprocess.Popen:
    """Start a new worker for a killed, failed or stopped run; it continues from the run's last
    checkpoint. Raises ValueError for a run in another state."""
    record = refresh_run(store, run_id)
    if not store.update_training_run(run_id, status="created", message="resuming", report={"stop_requested": False},
                                     expect_status=RESUMABLE):
        raise ValueError(f"run {run_id} is {record.status}: only a killed, failed or stopped run can be resumed")
    return launch_worker(store, run_id)
