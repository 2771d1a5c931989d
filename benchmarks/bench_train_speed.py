"""Training throughput (images/s) and peak memory of one training step, per preset and device.

Each (preset, device) runs in a fresh process so its peak memory is its own: peak RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU. A step is the full recipe (matching, guided pass,
12,544-point losses unless --num-points, AdamW) on synthetic shape images at the preset's test size
(e.g. 576x768 for D1-R50-576). The baseline, in the same process, is forward + backward of the bare
model on the same batch with a trivial loss: the ratio shows what the recipe's criterion costs.

    .venv/bin/python benchmarks/bench_train_speed.py                      # D1-R50-576 and tiny on CPU (+GPU if any)
    .venv/bin/python benchmarks/bench_train_speed.py --presets tiny --iters 10
"""
from __future__ import annotations

import argparse
import json
import subprocess
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
from training.losses import LossConfig  # noqa: E402
from training.synthetic import make_shapes_dataset  # noqa: E402
from training.trainer import TrainConfig, Trainer, peak_memory_mb  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(fn, iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def child(preset: str, device: str, batch: int, iters: int, warmup: int, num_points: int, threads: int) -> dict:
    """Measure one configuration in this process."""
    torch.set_num_threads(threads)
    spec = build_model(preset, num_classes=3).input_spec
    short, long = spec.min_size, spec.max_size
    size = (short, min(long, round(short * 4 / 3)))
    with tempfile.TemporaryDirectory() as tmp:
        json_path = make_shapes_dataset(tmp, batch, seed=0, size=size)
        augment = AugmentConfig(min_sizes=(short,), max_size=long, crop_prob=0.0)
        config = TrainConfig(train_json=str(json_path), image_root=str(Path(tmp) / "images"), preset=preset,
                             output_dir=str(Path(tmp) / "run"), max_iters=10**6, batch_size=batch, augment=augment,
                             loss=LossConfig(num_points=num_points), num_workers=0, device=device, resume=False)
        trainer = Trainer(config, distributed.setup(device))
        samples = [trainer.dataset[(i, i)] for i in range(batch)]
        dev = trainer.info.device
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        step_s = time_steps(lambda: trainer.step(samples), iters, warmup, dev)
        peak = peak_memory_mb(dev)
        baseline_s = time_steps(lambda: bare_step(trainer, samples), iters, warmup, dev)
    return {"preset": preset, "device": str(dev), "image_size": list(size), "batch": batch, "amp": str(trainer.dtype),
            "threads": threads, "num_points": num_points, "step_s": step_s, "images_per_s": batch / step_s,
            "peak_memory_mb": peak, "bare_fwd_bwd_images_per_s": batch / baseline_s, "recipe_over_bare": step_s / baseline_s}


def bare_step(trainer: Trainer, samples: list) -> None:
    """Baseline: forward + backward of the model alone (sum of the final outputs as the loss)."""
    batch, _ = trainer.model.preprocess([s["image"] for s in samples])
    dtype = trainer.dtype
    with torch.autocast(batch.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = trainer.model(batch)
    loss = out["pred_masks"].float().mean() + out["pred_logits"].float().mean() + out["proposal_logits"].float().mean()
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["D1-R50-576", "tiny"])
    p.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    p.add_argument("--batch", type=int, default=None, help="images per step (default: 2 on CPU, 16 on GPU)")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--num-points", type=int, default=12544)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", nargs=2, metavar=("PRESET", "DEVICE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        batch = a.batch or (16 if a.child[1] == "cuda" else 2)
        print(json.dumps(child(a.child[0], a.child[1], batch, a.iters, a.warmup, a.num_points, a.threads)))
        return 0
    devices = a.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    rows = []
    for device in devices:
        for preset in a.presets:
            cmd = [sys.executable, __file__, "--child", preset, device, "--iters", str(a.iters), "--warmup",
                   str(a.warmup), "--num-points", str(a.num_points), "--threads", str(a.threads)]
            if a.batch:
                cmd += ["--batch", str(a.batch)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode:
                print(f"{preset} on {device} failed:\n{out.stderr[-2000:]}")
                continue
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"{r['preset']:>12} {r['device']:>6} {r['image_size'][0]}x{r['image_size'][1]} batch {r['batch']:>2} "
                  f"amp {r['amp']:>14}: {r['images_per_s']:7.2f} img/s  peak {r['peak_memory_mb']:8.0f} MB  "
                  f"(bare fwd+bwd {r['bare_fwd_bwd_images_per_s']:7.2f} img/s, recipe/bare time x{r['recipe_over_bare']:.2f})",
                  flush=True)
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
