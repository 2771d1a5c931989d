"""``python -m training.worker``: train one fine-tuning run recorded in the annotation store.

    python -m training.worker --run N                      # the run the studio recorded (and resumes)
    python -m training.worker --dataset shapes --start-from VERSION --work-dir runs/   # a new run, from the CLI

The store URL comes from the ``FASTINST_STORE_URL`` environment variable (not the command line,
where a password would be visible to every user) or ``--db``. The worker (rank 0 under torchrun)
writes into the run's row: status ``running``, its pid and host, a heartbeat every few seconds,
the iteration, the curves (smoothed loss and its parts, validation AP), the starting-weights
report; at the end the starting and the chosen model scored on the test split with intervals,
the verdict (:mod:`training.verdict`) and the model version it made (tied to the parent version
and the dataset revision). A stop request in the store stops it cleanly. Killed, it
writes nothing more: the studio notices (no process, no heartbeat) and offers Resume, which runs
this command again and continues from the last checkpoint.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .distributed import resolve_device
from .finetune import STORE_URL_ENV, version_name
from .trainer import BEST_NAME, TrainConfig, train
from .verdict import Verdict, decide, score

HEARTBEAT_S = 5.0        # how often the worker says it is alive
FLUSH_S = 1.0            # how often progress and loss points are written
STOP_POLL_S = 2.0        # how often the store is asked whether to stop
EMA = 0.1                # weight of a new loss value in the smoothed curve
LOSS_PARTS = ("proposal", "ce", "mask", "dice", "l1", "giou")   # loss_<part>[...]: summed over heads / stages


def loss_parts(values: Dict[str, float]) -> Dict[str, float]:
    """The total loss and its parts summed over every head or stage: ``{"loss", "proposal", "ce",
    "mask", "dice"}`` (FastInst) or ``{"loss", "ce", "dice", "l1", "giou"}`` (QueryInst) from the
    recipe's ``loss_<part>[_head<j>|_guided<i>|_stage<s>]`` values; a part the model lacks is left out."""
    out = {"loss": float(values["loss"])}
    for part in LOSS_PARTS:
        terms = [v for k, v in values.items() if k == f"loss_{part}" or k.startswith(f"loss_{part}_")]
        if terms:
            out[part] = float(sum(terms))
    return out


class Reporter:
    """Bridges the trainer's callbacks to the store (rank 0)."""

    def __init__(self, store: Any, run_id: int) -> None:
        self.store, self.run_id = store, run_id
        self.smooth: Dict[str, float] = {}
        self.pending: List[Tuple[int, str, Dict[str, Any]]] = []
        self.iteration = 0
        self.last_flush = self.last_stop_poll = 0.0
        self.stop = False
        self.done = threading.Event()
        self.beat = threading.Thread(target=self._heartbeat, daemon=True, name="heartbeat")

    def _heartbeat(self) -> None:
        from annotations.schema import utc_now
        while not self.done.wait(HEARTBEAT_S):
            try:
                self.store.update_training_run(self.run_id, heartbeat_at=utc_now())
            except Exception:  # noqa: BLE001 - a busy database must not kill training; next beat retries
                traceback.print_exc()

    def progress(self, iteration: int, total: int, values: Dict[str, float]) -> None:
        """Smooth the losses (exponential moving average seeded with the first value) and buffer
        a point ``{"loss_raw", "loss", "proposal", "ce", "mask", "dice" (smoothed), "lr"}``."""
        self.iteration = iteration
        raw = loss_parts(values)
        for k, v in raw.items():
            self.smooth[k] = v if k not in self.smooth else (1 - EMA) * self.smooth[k] + EMA * v
        self.pending.append((iteration, "loss", {"loss_raw": raw["loss"], **self.smooth, "lr": values.get("lr")}))
        if time.monotonic() - self.last_flush >= FLUSH_S or iteration == total:
            self.flush()

    def flush(self) -> None:
        from annotations.schema import utc_now
        if self.pending:
            self.store.add_training_metrics(self.run_id, self.pending)
            self.pending = []
        self.store.update_training_run(self.run_id, iteration=self.iteration, heartbeat_at=utc_now(),
                                       message=f"training: iteration {self.iteration}")
        self.last_flush = time.monotonic()

    def should_stop(self) -> bool:
        if time.monotonic() - self.last_stop_poll >= STOP_POLL_S:
            self.last_stop_poll = time.monotonic()
            self.stop = bool((self.store.training_run(self.run_id).report or {}).get("stop_requested"))
        return self.stop

    def event(self, kind: str, iteration: int, data: Dict[str, Any]) -> None:
        self.iteration = iteration
        if kind == "start":
            # a resumed run redoes the iterations after its checkpoint: forget their points
            self.store.drop_training_metrics_after(self.run_id, iteration)
            self.store.update_training_run(self.run_id, max_iters=int(data["max_iters"]), iteration=iteration,
                                           report={"init_weights": data["init_weights"],
                                                   "resumed_from": iteration or None})
        elif kind == "eval":
            numbers = {k: v for k, v in data.items() if v is not None}
            self.pending.append((iteration, "eval", numbers))
            self.flush()
        elif kind == "best":
            self.store.update_training_run(self.run_id, report={"best": data})


def run(store: Any, run_id: int) -> int:
    """Train run ``run_id`` to the end; returns the exit code (0 done or stopped, 1 failed)."""
    from annotations.schema import utc_now
    main = int(os.environ.get("RANK", "0")) == 0
    record = store.training_run(run_id)
    config = TrainConfig.from_dict(record.config)
    world = int(os.environ.get("WORLD_SIZE", "1"))   # under torchrun: every GPU takes an equal share
    config.batch_size = world * -(-config.batch_size // world)
    reporter = Reporter(store, run_id) if main else None
    if main:
        store.update_training_run(run_id, status="running", worker_pid=os.getpid(), worker_host=socket.gethostname(),
                                  heartbeat_at=utc_now(), message="starting", report={"stop_requested": False})
        reporter.beat.start()
    try:
        best = train(config, progress=reporter.progress if main else None,
                     should_stop=reporter.should_stop if main else None, on_event=reporter.event if main else None)
        if main:
            reporter.flush()
            finish(store, run_id, config, Path(best), stopped=reporter.stop)
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure is written to the run, then re-raised
        if main:
            store.update_training_run(run_id, status="failed", message=f"training failed: {type(e).__name__}: {e}")
        raise
    finally:
        if reporter is not None:
            reporter.done.set()


def finish(store: Any, run_id: int, config: TrainConfig, chosen: Path, stopped: bool) -> None:
    """Score the starting model and the chosen one on the test split (:mod:`training.verdict`),
    register the chosen model as a version unless the run chose none (validation kept the
    starting model, or no iteration ran), and say in the run's message whether it is better."""
    record = store.training_run(run_id)
    report = record.report or {}
    status = "stopped" if stopped else "done"
    validated = bool(config.val_json)
    chosen_at = int((report.get("best") or {}).get("iteration", 0)) if validated else record.iteration
    new_model = chosen_at > 0 and chosen.is_file() and (chosen.name == BEST_NAME or not validated)
    test = report.get("test") or []
    store.update_training_run(run_id, message=f"measuring the starting and the new model on the {len(test)} "
                                              f"test images")
    device = str(resolve_device(config.device))
    root = config.val_image_root or config.image_root
    test_json = Path(record.path) / "test.json"
    before = score(config.init_weights, test_json, root, preset=config.preset, device=device)
    verdict = decide(before, score(chosen, test_json, root, device=device) if new_model else None)
    parent = record.parent_version
    metrics = {"test": verdict.to_dict(), "chosen_iteration": chosen_at}
    if not new_model:
        why = (f"no checkpoint did better than the starting model on the {len(report.get('val') or [])} validation "
               f"images (training on these corrections did not improve it there: it may already know images like "
               f"these, or the corrections are too few to teach it more)" if chosen_at == 0 and validated
               else "the run stopped before training")
        store.update_training_run(run_id, status=status, metrics=metrics,
                                  message=f"{status}: nothing new to offer: {why}; {verdict.sentence}. "
                                          f"{parent} stays the current model.")
        return
    final = Path(record.path) / f"run-{run_id:04d}.safetensors"
    shutil.copyfile(chosen, final)
    name = version_name(final)
    if store.model_version(name) is None:
        # what the model picker shows and warns with (app.project.test_ap, app.studio.switch_model)
        store.record_model_version(name, str(final), metrics=version_metrics(verdict), parent=parent,
                                   dataset_revision=record.dataset_revision, run_id=run_id)
    how = (f"checkpoint of iteration {chosen_at}, chosen on the validation images" if validated
           else f"the last model (iteration {chosen_at}; no validation image to choose with)")
    figures = (f"test mask AP {verdict.before['segm/AP'].text()} -> {verdict.after['segm/AP'].text()}"
               if verdict.after else "")
    offer = ("Use the new model to predict with it." if verdict.better
             else f"{name} is kept as a version but not proposed; {parent} stays the current model.")
    store.update_training_run(run_id, status=status, metrics=metrics, model_version=name,
                              message=f"{status}: {name} ({how}); {figures}; {verdict.sentence}. {offer}")


def version_metrics(verdict: Verdict) -> Dict[str, Any]:
    """A model version's stored metrics: its test AP (``"test"``), its parent's on the same images
    (``"test_before"``), the paired gain, whether it was offered as better and why (``"verdict"``)."""
    out = verdict.to_dict()
    return {"test": out["after"], "test_before": out["before"], "gain": out["gain"], "better": out["better"],
            "verdict": out["sentence"]}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.worker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", type=int, default=None, help="id of a recorded training run to train or resume")
    p.add_argument("--db", default=None, help=f"store URL (default: ${STORE_URL_ENV})")
    p.add_argument("--dataset", default=None, help="new run: name of the dataset whose reviewed images to train on")
    p.add_argument("--start-from", default=None, help="new run: the registered model version to fine-tune")
    p.add_argument("--preset", default=None, help="new run: the model preset (read from our checkpoints; "
                                                  "needed for an official .pth/.pkl)")
    p.add_argument("--work-dir", default="runs", help="new run: folder for run-NNNN/ (default: runs)")
    p.add_argument("--iters", type=int, default=None, help="new run: iterations (default: the one-click rule)")
    p.add_argument("--device", default="auto", help="new run: auto, cpu or cuda")
    return p


def new_run(store: Any, args: argparse.Namespace) -> int:
    """Record a run from the command-line options; returns its id (ValueError on bad options)."""
    from .finetune import Overrides, prepare_run
    dataset = next((d.id for d in store.list_datasets() if d.name == args.dataset), None)
    if dataset is None:
        raise ValueError(f"no dataset called {args.dataset!r} in the store")
    version = store.model_version(args.start_from or "")
    if version is None or not version.path:
        raise ValueError(f"no registered model version {args.start_from!r} with a checkpoint")
    preset = args.preset
    if preset is None and version.path.endswith(".safetensors"):
        from engines.load import checkpoint_preset
        preset = checkpoint_preset(version.path)
    if preset is None:
        raise ValueError(f"{version.path} is an official checkpoint: give --preset")
    from engines.load import weights_model
    return prepare_run(store, dataset, parent_version=version.name, parent_path=version.path, preset=preset,
                       work_dir=args.work_dir, device=args.device, overrides=Overrides(max_iters=args.iters),
                       model=weights_model(version.path, preset))


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    url = args.db or os.environ.get(STORE_URL_ENV)
    if not url:
        print(f"python -m training.worker: no store: pass --db URL or set {STORE_URL_ENV}", file=sys.stderr)
        return 2
    if (args.run is None) == (args.dataset is None):
        print("python -m training.worker: give either --run N or --dataset NAME --start-from VERSION", file=sys.stderr)
        return 2
    from annotations import Store
    store = Store(url, migrate=args.run is None)
    try:
        run_id = args.run
        if run_id is None:
            try:
                run_id = new_run(store, args)
            except ValueError as e:
                print(f"python -m training.worker: {e}", file=sys.stderr)
                return 2
            print(f"run {run_id}: {store.training_run(run_id).report['defaults']}")
        return run(store, run_id)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
