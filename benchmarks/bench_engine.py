"""Inference speed and memory of the engine, per preset, on CPU or CUDA.

    python benchmarks/bench_engine.py [--presets D1-R50-576 tiny] [--device auto] [--iters 10]

Prints images/s of the model forward at the preset's test size (4:3 image) and of the whole
Predictor (resize + forward + post-processing), peak memory, and the ratio of each variant to the
fp32 eager baseline measured in the same process (channels_last; autocast bf16/fp16 on CUDA).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from fastinst import Predictor, build_model, resolve_device


def timed(fn, iters: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` (2 warm-up calls, then ``iters`` timed)."""
    for _ in range(2):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters


def bench_preset(name: str, device: torch.device, iters: int) -> None:
    model = build_model(name).to(device).eval()
    spec = model.input_spec
    height, width = spec.min_size, int(round(spec.min_size * 4 / 3))
    batch, _ = model.preprocess([torch.randint(0, 255, (3, height, width), dtype=torch.uint8)])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def forward():
        with torch.inference_mode():
            model(batch)

    base = timed(forward, iters, device)
    print(f"{name:16s} {device.type:4s} {height}x{width}  fp32 eager: {1 / base:7.2f} img/s", flush=True)
    model_cl = model.to(memory_format=torch.channels_last)
    t = timed(forward, iters, device)
    print(f"{'':16s} channels_last: {1 / t:7.2f} img/s  (x{base / t:.2f} vs eager)", flush=True)
    model.to(memory_format=torch.contiguous_format)
    if device.type == "cuda":
        for dtype in (torch.float16, torch.bfloat16):
            def amp():
                with torch.inference_mode(), torch.autocast("cuda", dtype=dtype):
                    model(batch)
            t = timed(amp, iters, device)
            print(f"{'':16s} autocast {str(dtype)[6:]}: {1 / t:7.2f} img/s  (x{base / t:.2f} vs eager)", flush=True)
    del model_cl
    predictor = Predictor(model, [str(i) for i in range(model.num_classes)], device=device)
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    t = timed(lambda: predictor.predict(image), max(2, iters // 2), device)
    print(f"{'':16s} Predictor on a 640x480 image (resize+forward+post): {1 / t:6.2f} img/s", flush=True)
    if device.type == "cuda":
        print(f"{'':16s} peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    else:
        print(f"{'':16s} peak process RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="*", default=["tiny", "D1-R50-576", "D3-R50-640"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    for name in args.presets:
        bench_preset(name, device, args.iters)


if __name__ == "__main__":
    main()
