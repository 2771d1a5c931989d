"""One training step, fast vs straightforward, in the same process, alternating, with the losses.

    python benchmarks/bench_train_step.py --preset D1-R50-576 --batch 2 --reps 3 --threads 2

Both variants run :meth:`training.trainer.Trainer.step` (the full recipe: matching, guided pass,
12,544-point losses, AdamW) on the same synthetic batch at the preset's test size, from the same
weights and optimizer state (restored before every step) and the same random seed. ``straight``:
the model in contiguous (NCHW) layout; ``fast``: :func:`fastinst.fast.prepare_for_training`
(channels-last). The losses of both are printed side by side. Note that the criterion's own
speed-ups (fused frozen BatchNorm, masks converted once) are in both variants: they are the code
now; the ratio shows the layout's share.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastinst import build_model  # noqa: E402
from fastinst.fast import prepare_for_training  # noqa: E402
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    spec = build_model(a.preset, num_classes=3).input_spec
    size = (spec.min_size, min(spec.max_size, round(spec.min_size * 4 / 3)))
    with tempfile.TemporaryDirectory() as tmp:
        json_path = make_shapes_dataset(tmp, a.batch, seed=0, size=size)
        augment = AugmentConfig(min_sizes=(spec.min_size,), max_size=spec.max_size, crop_prob=0.0)
        config = TrainConfig(train_json=str(json_path), image_root=str(Path(tmp) / "images"), preset=a.preset,
                             output_dir=str(Path(tmp) / "run"), max_iters=10**6, batch_size=a.batch, augment=augment,
                             num_workers=0, device=a.device, resume=False)
        trainer = Trainer(config, distributed.setup(a.device))
        samples = [trainer.dataset[(i, i)] for i in range(a.batch)]
        dev = trainer.info.device
        model_state = copy.deepcopy(trainer.model.state_dict())
        optim_state = copy.deepcopy(trainer.optimizer.state_dict())

        def step(layout: torch.memory_format):
            if layout is torch.channels_last:
                prepare_for_training(trainer.model)
            else:
                trainer.model.to(memory_format=torch.contiguous_format)
            trainer.model.load_state_dict(model_state)
            trainer.optimizer.load_state_dict(optim_state)
            torch.manual_seed(0)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            start = time.perf_counter()
            values = trainer.step(samples)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            return time.perf_counter() - start, values

        variants = {"straight": torch.contiguous_format, "fast": torch.channels_last}
        times = {k: [] for k in variants}
        losses = {}
        for k, layout in variants.items():  # warm-up
            step(layout)
        for _ in range(a.reps):
            for k, layout in variants.items():
                t, values = step(layout)
                times[k].append(t)
                losses[k] = values
    s, f = statistics.median(times["straight"]), statistics.median(times["fast"])
    print(f"{a.preset} training step, batch {a.batch} at {size[0]}x{size[1]}, {dev}, {torch.get_num_threads()} threads, "
          f"median of {a.reps} alternating reps (shared machine: the ratio is what counts)")
    print(f"  straight {s:.2f} s/step, fast {f:.2f} s/step, fast/straight {f / s:.2f}; "
          f"peak memory (process) {peak_memory_mb(dev):.0f} MB")
    worst = max(abs(losses["fast"][k] - losses["straight"][k]) / max(abs(losses["straight"][k]), 1e-8) for k in losses["fast"])
    print(f"  losses (straight / fast), largest relative difference {worst:.2e}:")
    for k in losses["straight"]:
        print(f"    {k:20s} {losses['straight'][k]:.6f} / {losses['fast'][k]:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
