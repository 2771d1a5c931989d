"""One training step, fast vs straightforward, in the same process, alternating, with the losses.

    python benchmarks/bench_train_step.py --preset D1-R50-576 --batch 2 --reps 3 --threads 2

Both variants run :meth:`training.trainer.Trainer.step` (the full recipe: matching, guided pass,
12,544-point losses, AdamW) on the same synthetic batch at the preset's test size, from the same
weights and optimizer state (restored before every step) and the same random seed:

- ``straight``: ``TrainConfig(fast_step=False)``, the plain computation (FrozenBatchNorm applied to
  each convolution's output, PyTorch's per-parameter AdamW);
- ``fast``: ``TrainConfig(fast_step=True)`` (the default): frozen BatchNorm folded into the
  convolution weights (:func:`fastinst.fast.prepare_for_training`), fused AdamW;
- ``fast+cl`` (with ``--channels-last``): the same in channels-last memory format.

The losses of the variants are printed side by side (each term); the ratio is of medians, of wall
clock and of the thread's CPU time (``time.thread_time``; with ``--threads 1`` every op runs on the
calling thread, so it is the work done whatever share of a core a loaded machine gave the process),
and the median of the per-rep ratios. The load average is printed.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastinst import build_model  # noqa: E402
from training import distributed  # noqa: E402
from training.augment import AugmentConfig  # noqa: E402
from training.synthetic import make_shapes_dataset  # noqa: E402
from training.trainer import TrainConfig, Trainer, peak_memory_mb  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="D1-R50-576")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--channels-last", action="store_true", help="also time the fast step in channels-last layout")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    spec = build_model(a.preset, num_classes=3).input_spec
    size = (spec.min_size, min(spec.max_size, round(spec.min_size * 4 / 3)))
    with tempfile.TemporaryDirectory() as tmp:
        json_path = make_shapes_dataset(tmp, a.batch, seed=0, size=size)
        augment = AugmentConfig(min_sizes=(spec.min_size,), max_size=spec.max_size, crop_prob=0.0)
        trainers = {}
        for name, fast in (("straight", False), ("fast", True)):
            config = TrainConfig(train_json=str(json_path), image_root=str(Path(tmp) / "images"), preset=a.preset,
                                 output_dir=str(Path(tmp) / name), max_iters=10**6, batch_size=a.batch,
                                 augment=augment, num_workers=0, device=a.device, resume=False, fast_step=fast,
                                 progress_bar=False)
            trainers[name] = Trainer(config, distributed.setup(a.device))
        straight = trainers["straight"]
        trainers["fast"].model.load_state_dict(straight.model.state_dict())
        samples = [straight.dataset[(i, i)] for i in range(a.batch)]
        dev = straight.info.device
        model_state = copy.deepcopy(straight.model.state_dict())
        optim_state = {k: copy.deepcopy(t.optimizer.state_dict()) for k, t in trainers.items()}
        variants = {"straight": (straight, "straight", False), "fast": (trainers["fast"], "fast", False)}
        if a.channels_last:
            variants["fast+cl"] = (trainers["fast"], "fast", True)

        def step(trainer: Trainer, optim_key: str, channels_last: bool):
            trainer.model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            trainer.model.load_state_dict(model_state)
            trainer.optimizer.load_state_dict(optim_state[optim_key])
            torch.manual_seed(0)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start, cpu_start = time.perf_counter(), time.thread_time()
            values = trainer.step(samples)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return (time.perf_counter() - start, time.thread_time() - cpu_start), values

        times = {k: [] for k in variants}
        cpu_times = {k: [] for k in variants}
        losses = {}
        for args in variants.values():  # warm-up
            step(*args)
        load = [os.getloadavg()[0]]
        for _ in range(a.reps):
            for k, args in variants.items():
                (t, c), values = step(*args)
                times[k].append(t)
                cpu_times[k].append(c)
                losses[k] = values
            load.append(os.getloadavg()[0])
    base, cpu_base = statistics.median(times["straight"]), statistics.median(cpu_times["straight"])
    print(f"{a.preset} training step, batch {a.batch} at {size[0]}x{size[1]}, {dev}, {torch.get_num_threads()} threads, "
          f"median of {a.reps} alternating reps (shared machine, load average {min(load):.1f}-{max(load):.1f}: the ratio "
          f"is what counts); peak memory (process) {peak_memory_mb(dev):.0f} MB")
    for k in variants:
        m, c = statistics.median(times[k]), statistics.median(cpu_times[k])
        paired = statistics.median(x / y for x, y in zip(cpu_times[k], cpu_times["straight"]))
        worst = max(abs(losses[k][n] - losses["straight"][n]) / max(abs(losses["straight"][n]), 1e-8) for n in losses[k])
        print(f"  {k:9s} {m:6.2f} s/step  {k}/straight {m / base:.3f}  (all: {', '.join(f'{t:.2f}' for t in times[k])}); "
              f"CPU {c:6.2f} s/step, {k}/straight {c / cpu_base:.3f} (median per-rep {paired:.3f}; all: "
              f"{', '.join(f'{t:.2f}' for t in cpu_times[k])}); largest relative loss difference {worst:.1e}")
    print("  losses: " + " / ".join(variants))
    for n in losses["straight"]:
        print(f"    {n:20s} " + " / ".join(f"{losses[k][n]:.6f}" for k in variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
