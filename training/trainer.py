"""Training loop: any of the project's models (``TrainConfig.model``; its parts in
:mod:`training.recipes`) on a COCO dataset, resumable, single process or torchrun/DDP.

``train(TrainConfig(...), progress=cb, should_stop=flag) -> Path`` trains, evaluates and returns
the final model saved with its model's ``save_checkpoint``. In ``output_dir`` it keeps:

- ``last_checkpoint.pt``: everything needed to resume exactly (model, optimiser, scheduler, grad
  scaler, iteration, RNG states), written every ``checkpoint_period`` iterations, when stopped
  (``should_stop``, SIGINT, SIGTERM) and after a failed iteration; a new run with the same
  ``output_dir`` and ``resume=True`` continues from it;
- ``metrics.jsonl``: one JSON object per logging period and per evaluation;
- ``model_final.safetensors``: the model with preset, class names, provenance and metrics;
- ``model_best.safetensors`` (``keep_best``): the model of the best evaluation so far.

With ``ema_decay`` > 0 an exponential moving average of the weights (``torch.optim.swa_utils``;
each step ``ema = decay * ema + (1 - decay) * weights``) is what is evaluated, kept as best and
saved; the raw weights only train.

With ``eval_at_start`` the starting model is evaluated first (the "before" of a fine-tuning run,
and the bar the best checkpoint must beat); ``early_stop_patience`` stops a run after that many
evaluations without a better ``best_metric``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import resource
import signal
import threading
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Tuple

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils.data import DataLoader
from tqdm import tqdm


from fastinst.fast import prepare_for_training

from . import distributed
from .augment import AugmentConfig
from .checkpoints import RESUME_NAME, load_resume, rng_state, save_resume, set_rng_state
from .data import CocoInstances, IterationBatchSampler, collate
from .losses import LossConfig
from .optim import build_optimizer, build_scheduler
from .recipes import recipe_for

ProgressFn = Callable[[int, int, Dict[str, float]], None]
StopFn = Callable[[], bool]
EventFn = Callable[[str, int, Dict[str, object]], None]
FINAL_NAME = "model_final.safetensors"
BEST_NAME = "model_best.safetensors"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainConfig:
    """One training run of ``model`` ("fastinst" or "queryinst"). Defaults are the official FastInst
    COCO recipe where one exists (``loss`` is FastInst's; QueryInst's weights are the official ones).

    ``batch_size`` counts images per iteration over all processes (detectron2's IMS_PER_BATCH).
    ``max_iters=None`` trains ``epochs`` passes over the training images. ``lr_steps`` are
    fractions of ``max_iters`` where the rate is multiplied by ``lr_gamma`` (official: iterations
    327,778 and 355,092 of 368,750). ``amp``: ``auto`` (bf16 on GPUs that support it, else fp16;
    off on CPU), ``off``, ``bf16`` or ``fp16``. ``augment=None`` uses the official augmentation
    scaled to the preset's test size (:func:`training.augment.augment_for`).
    """

    train_json: str
    image_root: str
    model: str = "fastinst"
    val_json: Optional[str] = None
    val_image_root: Optional[str] = None
    preset: str = "tiny"
    init_weights: Optional[str] = None
    output_dir: str = "runs/train"
    max_iters: Optional[int] = None
    epochs: float = 50.0
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.05
    decay_norm_and_embedding: bool = False  # True: QueryInst's official config (training.optim)
    backbone_lr_multiplier: float = 0.1
    lr_steps: Tuple[float, ...] = (0.8889, 0.9630)
    lr_gamma: float = 0.1
    warmup_iters: int = 10
    warmup_factor: float = 1.0
    clip_grad_norm: Optional[float] = None
    amp: str = "auto"
    fast_step: bool = True  # frozen BatchNorm folded into the convolutions, fused AdamW; False: the plain computation
    device: str = "auto"
    seed: int = 42
    keep_empty_images: bool = True
    strict: bool = False  # refuse a COCO file with any fault instead of repairing it (annotations.coco_parse)
    augment: Optional[AugmentConfig] = None  # None: official sizes, scaled to the preset (augment_for)
    loss: LossConfig = field(default_factory=LossConfig)
    checkpoint_period: int = 1000
    eval_period: int = 0
    eval_batch_size: int = 4
    log_period: int = 20
    num_workers: int = 2
    num_threads: Optional[int] = None
    resume: bool = True
    progress_bar: bool = True
    eval_at_start: bool = False
    keep_best: bool = False
    best_metric: str = "segm/AP"
    early_stop_patience: int = 0  # evaluations without a better best_metric before stopping; 0 = never
    ema_decay: float = 0.0  # evaluate and save a moving average of the weights with this decay; 0 = off
    copy_paste: float = 0.0  # share of training samples given another image's objects (training.augment.copy_paste)

    def to_dict(self) -> Dict[str, object]:
        """Plain JSON-able dict (nested configs included)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Dict[str, object]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`."""
        data = dict(data)
        aug = data.get("augment")
        data["augment"] = None if aug is None else AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in aug.items()})
        data["loss"] = LossConfig(**data.get("loss", {}))
        data["lr_steps"] = tuple(data.get("lr_steps", ()))
        return cls(**data)


def amp_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``amp`` on ``device`` (None = full precision)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by PyTorch on ``device``, or the process's peak RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter, bit for bit (to compare DDP replicas; buffers such as BatchNorm
    running statistics are excluded: DDP overwrites them with rank 0's at every forward)."""
    h = hashlib.sha256()
    for key, value in sorted(model.named_parameters()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class StopSignals:
    """Turns SIGINT/SIGTERM into a stop request while training (main thread only); a second
    SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    """Holds the state of one run; :meth:`run` trains. Use :func:`train` rather than this class."""

    def __init__(self, config: TrainConfig, info: distributed.DistInfo, progress: Optional[ProgressFn] = None,
                 should_stop: Optional[StopFn] = None, on_event: Optional[EventFn] = None) -> None:
        self.config, self.info = config, info
        self.progress, self.should_stop, self.on_event = progress, should_stop, on_event
        self.out = Path(config.output_dir)
        if config.batch_size % info.world_size:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by {info.world_size} processes")
        self.local_batch = config.batch_size // info.world_size
        self.dataset = CocoInstances(config.train_json, config.image_root, keep_empty=config.keep_empty_images,
                                     seed=config.seed, strict=config.strict)
        if info.is_main:
            for line in self.dataset.report.lines():
                print(line, file=sys.stderr)
            if not self.dataset.parsed.annotations:
                print(f"warning: {self.dataset.report.file_name} has no usable annotations: every image trains "
                      f"as a negative", file=sys.stderr)
        self.class_names = self.dataset.class_names
        self.max_iters = config.max_iters or math.ceil(config.epochs * len(self.dataset) / config.batch_size)
        torch.manual_seed(config.seed)  # identical initial weights on every process
        self.recipe = recipe_for(config.model)
        self.model = self._build_model().to(info.device).train()
        if config.fast_step:
            prepare_for_training(self.model)
        self.dataset.augment_config = config.augment or self.recipe.augment(self.model)
        self.dataset.copy_paste = config.copy_paste
        self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay),
                                 use_buffers=True) if config.ema_decay else None
        self.criterion = self.recipe.criterion(len(self.class_names), config.loss)
        if config.loss.click_weight > 0 and info.world_size > 1:
            raise ValueError("click-aware training (loss.click_weight > 0) runs on one process only: its second "
                             "decoder pass is outside the DistributedDataParallel forward")
        self.click_rng = torch.Generator().manual_seed(config.seed + 1)
        self.optimizer = build_optimizer(self.model, config.lr, config.weight_decay, config.backbone_lr_multiplier,
                                         config.decay_norm_and_embedding, fused=config.fast_step)
        steps = [round(f * self.max_iters) for f in config.lr_steps]
        self.scheduler = build_scheduler(self.optimizer, steps, config.lr_gamma, config.warmup_iters, config.warmup_factor)
        self.dtype = amp_dtype(config.amp, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.dtype == torch.float16)
        self.iteration = 0
        self.last_eval: Dict[str, float] = {}
        self.evals: Dict[int, float] = {}  # iteration -> best_metric of every evaluation so far
        self.early_stopped = False
        self._resume_if_possible()
        self.ddp = self._wrap()

    def _build_model(self) -> torch.nn.Module:
        model = self.recipe.build(self.config.preset, len(self.class_names))
        self.init_report: Dict[str, object] = {}
        if self.config.init_weights:
            how, notes = self.recipe.load_initial_weights(model, self.config.init_weights, self.config.preset,
                                                          self.class_names)
            self.init_report = {"init_weights": str(self.config.init_weights), "how": how, "notes": notes}
        return model

    @property
    def kept(self) -> torch.nn.Module:
        """The weights that are evaluated and saved: the moving average with ``ema_decay``, else the model."""
        return self.model if self.ema is None else self.ema.module

    def _wrap(self) -> torch.nn.Module:
        if not self.info.distributed:
            return self.model
        ids = [self.info.device.index] if self.info.device.type == "cuda" else None
        return DistributedDataParallel(self.model, device_ids=ids,
                                       find_unused_parameters=self.recipe.find_unused_parameters(self.config.loss))

    @property
    def resume_path(self) -> Path:
        return self.out / RESUME_NAME

    def _resume_if_possible(self) -> None:
        if not (self.config.resume and self.resume_path.is_file()):
            return
        state = load_resume(self.resume_path)
        if state["class_names"] != self.class_names:
            raise ValueError(f"{self.resume_path} was trained on classes {state['class_names']}, "
                             f"this dataset has {self.class_names}; use another output_dir or resume=False")
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.evals = {it: v for it, v in self._logged_evals().items() if it <= self.iteration}

    def _logged_evals(self) -> Dict[int, float]:
        """iteration -> best_metric of the evaluations in ``metrics.jsonl`` (the last of repeats:
        a resumed run redoes the iterations after its checkpoint, with the same results)."""
        path, out = self.out / METRICS_NAME, {}
        if path.is_file():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                value = record.get("eval", {}).get(self.config.best_metric) if "eval" in record else None
                if value is not None:
                    out[int(record["iteration"])] = float(value)
        return out

    def save_resume(self, rng: Optional[Dict[str, object]] = None, sync: bool = True) -> None:
        """Write ``last_checkpoint.pt`` (rank 0) for the iterations completed so far; ``rng`` is the
        RNG state to store (default: the current one)."""
        if self.info.is_main:
            save_resume(self.resume_path, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                        scaler=self.scaler, iteration=self.iteration, config_json=json.dumps(self.config.to_dict()),
                        class_names=self.class_names, rng=rng, ema=self.ema)
        if sync:
            distributed.barrier()

    def loader(self) -> Iterator[list]:
        sampler = IterationBatchSampler(len(self.dataset), self.local_batch, seed=self.config.seed,
                                        start_iter=self.iteration, max_iters=self.max_iters,
                                        rank=self.info.rank, world_size=self.info.world_size)
        workers = self.config.num_workers
        return iter(DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                               pin_memory=self.info.device.type == "cuda", persistent_workers=False,
                               generator=torch.Generator().manual_seed(self.config.seed),
                               prefetch_factor=2 if workers else None))

    def step(self, samples: list) -> Dict[str, float]:
        """One optimisation step on this process's ``samples``; returns the loss values."""
        device = self.info.device
        local = sum(int(s["labels"].numel()) for s in samples)
        num_masks = max(distributed.all_reduce_sum(local, device) / self.info.world_size, 1.0)
        clicks = self.click_rng if self.config.loss.click_weight > 0 else None
        losses = self.recipe.losses(self.ddp, self.model, self.criterion, samples, device, self.dtype, num_masks,
                                    clicks)
        total = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.config.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        numbers = torch.stack([v.detach().float() for v in losses.values()] + [total.detach().float()]).tolist()
        values = dict(zip(list(losses) + ["loss"], numbers))  # one device sync for all the numbers
        return values

    def run(self) -> Path:
        """Train from ``self.iteration`` to ``max_iters`` (or until stopped); returns the final model path."""
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if self.init_report and self.iteration == 0:
            self.log(self.init_report)
        bar = tqdm(total=self.max_iters, initial=self.iteration, desc="train", dynamic_ncols=True,
                   disable=not (self.config.progress_bar and self.info.is_main))
        window = MetricWindow()
        stopped = False
        self.emit("start", {"max_iters": self.max_iters, "init_weights": self.init_report,
                            "train_images": len(self.dataset)})
        if self.config.eval_at_start and self.config.val_json and self.iteration == 0 and 0 not in self.evals:
            self.run_eval()
        with StopSignals() as signals:
            batches = self.loader()
            rng_resume: Optional[Dict[str, object]] = None
            try:
                while self.iteration < self.max_iters:
                    rng_resume = rng_state()  # if this iteration fails, it is saved as not yet begun
                    t0 = time.perf_counter()
                    samples = next(batches)
                    t1 = time.perf_counter()
                    values = self.step(samples)
                    self.iteration += 1
                    rng_resume = None
                    window.add(values, t1 - t0, time.perf_counter() - t1)
                    self._after_step(values, window, bar)
                    local_stop = signals.requested or bool(self.info.is_main and self.should_stop and self.should_stop())
                    if distributed.any_process(local_stop, self.info.device):
                        stopped = True
                        break
                    if self.early_stopped:
                        break
            except BaseException:
                # weights and optimiser are those of the last completed iteration (unless the failure
                # hit the parameter update itself); no barrier: other processes may be gone
                self.save_resume(rng=rng_resume, sync=False)
                raise
            finally:
                bar.close()
        self.save_resume()
        return self._finish(stopped)

    def _after_step(self, values: Dict[str, float], window: "MetricWindow", bar: tqdm) -> None:
        it, cfg = self.iteration, self.config
        if self.info.is_main:
            bar.update(1)
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if self.progress:
                self.progress(it, self.max_iters, {**values, "lr": self.optimizer.param_groups[0]["lr"]})
        if it % cfg.log_period == 0 or it == self.max_iters:
            self.log({"iteration": it, "lr": self.optimizer.param_groups[0]["lr"], **window.summary(self.local_batch * self.info.world_size),
                      "peak_memory_mb": peak_memory_mb(self.info.device)})
            window.reset()
        if cfg.checkpoint_period and it % cfg.checkpoint_period == 0 and it < self.max_iters:
            self.save_resume()
        if cfg.val_json and cfg.eval_period and it % cfg.eval_period == 0 and it < self.max_iters:
            self.run_eval()

    def run_eval(self) -> Dict[str, float]:
        """COCO mask AP on the validation set (every process takes part); logged on rank 0."""
        cfg = self.config
        if self.info.distributed:  # evaluate every shard with rank 0's BatchNorm statistics
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, 0)
        from .evaluate import evaluate_model  # here, so `python -m training.evaluate` loads its module once
        self.last_eval = evaluate_model(self.kept, self.class_names, cfg.val_json, cfg.val_image_root or cfg.image_root,
                                        batch_size=cfg.eval_batch_size, progress=cfg.progress_bar)
        self.log({"iteration": self.iteration, "eval": self.last_eval})
        self._track_best(self.last_eval)
        self.emit("eval", self.last_eval)
        return self.last_eval

    def _track_best(self, metrics: Dict[str, float]) -> None:
        """Keep the best model (``keep_best``) and decide on early stopping (same on every process:
        the metrics are broadcast)."""
        cfg = self.config
        value = metrics.get(cfg.best_metric)
        value = -1.0 if value is None or math.isnan(value) else float(value)
        best_before = max(self.evals.values(), default=None)
        self.evals[self.iteration] = value
        if best_before is None or value > best_before:
            if cfg.keep_best and self.info.is_main:
                self.recipe.save(self.out / BEST_NAME, self.kept, preset=cfg.preset, class_names=self.class_names,
                                 provenance=self._provenance(stopped=False), metrics=metrics)
            self.emit("best", {**metrics, "iteration": self.iteration})
        elif cfg.early_stop_patience:
            best_at = max(it for it, v in self.evals.items() if v == max(self.evals.values()))
            since = sum(1 for it in self.evals if it > best_at)
            self.early_stopped = since >= cfg.early_stop_patience

    def best_iteration(self) -> Optional[int]:
        """The iteration of the best evaluation so far (the earliest of equals), or None."""
        if not self.evals:
            return None
        top = max(self.evals.values())
        return min(it for it, v in self.evals.items() if v == top)

    def emit(self, kind: str, data: Dict[str, object]) -> None:
        """Tell ``on_event`` (rank 0) about a start, an evaluation or a new best."""
        if self.info.is_main and self.on_event:
            self.on_event(kind, self.iteration, data)

    def log(self, record: Dict[str, object]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (rank 0)."""
        if self.info.is_main:
            with open(self.out / METRICS_NAME, "a") as f:
                f.write(json.dumps(record) + "\n")

    def _provenance(self, stopped: bool) -> Dict[str, object]:
        return {"training_config": self.config.to_dict(), "iterations": self.iteration, "max_iters": self.max_iters,
                "stopped_early": stopped, "early_stopped": self.early_stopped, "world_size": self.info.world_size,
                "device": str(self.info.device), "train_images": len(self.dataset), "torch": torch.__version__,
                "augment": dataclasses.asdict(self.dataset.augment_config)}

    def _finish(self, stopped: bool) -> Path:
        cfg = self.config
        if cfg.val_json and not stopped and self.iteration not in self.evals:
            self.run_eval()
        digests = distributed.gather_objects(weights_digest(self.model))
        self.log({"iteration": self.iteration, "replica_sha256": digests, "stopped": stopped,
                  "early_stopped": self.early_stopped, "best_iteration": self.best_iteration()})
        path = self.out / FINAL_NAME
        if self.info.is_main:
            self.recipe.save(path, self.kept, preset=cfg.preset, class_names=self.class_names,
                             provenance=self._provenance(stopped), metrics=self.last_eval)
        distributed.barrier()
        if cfg.keep_best and (self.out / BEST_NAME).is_file():
            return self.out / BEST_NAME
        return path


class MetricWindow:
    """Running means of the losses and timings since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: Dict[str, float] = {}
        self.count, self.data_time, self.step_time = 0, 0.0, 0.0

    def add(self, values: Dict[str, float], data_time: float, step_time: float) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1
        self.data_time += data_time
        self.step_time += step_time

    def summary(self, images_per_iter: int) -> Dict[str, float]:
        n = max(self.count, 1)
        per_iter = (self.data_time + self.step_time) / n
        means = {k: v / n for k, v in self.sums.items()}
        return {**means, "time": per_iter, "data_time": self.data_time / n,
                "images_per_s": images_per_iter / per_iter if per_iter else 0.0}


def train(config: TrainConfig, progress: Optional[ProgressFn] = None, should_stop: Optional[StopFn] = None,
          on_event: Optional[EventFn] = None) -> Path:
    """Train (or resume) one run; returns the path of the final checkpoint (the model's own
    ``save_checkpoint`` format), or of the best one with ``keep_best`` (when an evaluation ran).

    ``progress(iteration, max_iters, metrics)`` is called after every iteration on rank 0;
    ``should_stop()`` is polled after every iteration (a True stops the run cleanly: a resume
    checkpoint and a model are saved and the model's path returned). ``on_event(kind, iteration,
    data)`` (rank 0) hears ``"start"`` (``max_iters``, ``init_weights`` report, ``train_images``),
    ``"eval"`` (the metrics) and ``"best"`` (the metrics of a new best model). Under ``torchrun``
    call it on every process.
    """
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    joined = not torch.distributed.is_initialized()
    info = distributed.setup(config.device)
    try:
        return Trainer(config, info, progress, should_stop, on_event).run()
    finally:
        if joined:
            distributed.cleanup()
