"""Inference latency per stage, images/s and peak memory: fast path vs the straightforward path vs
torchvision's Mask R-CNN R50-FPN, measured in the same process, alternating, on CPU or CUDA.

    python benchmarks/bench_engine.py                                   # tiny (demo model) and D1-R50-576, batch 1 and 8
    python benchmarks/bench_engine.py --presets D1-R50-576 --batch 1 --reps 7 --threads 2
    python benchmarks/bench_engine.py --device cuda --presets D1-R50-576 D3-R50-640 --batch 1 8   # GPU

    python benchmarks/bench_engine.py --presets tiny --batch 1 --threads 1 --no-maskrcnn --onnxruntime

Every repetition runs each variant in turn (straight, fast, fast at the studio's score floor,
onnxruntime when asked, Mask R-CNN), so a load change on a shared machine hits all of them alike;
each timed run follows ``--lead-in`` untimed runs of the same variant (default 1), so it finds the
allocator and caches as its own previous prediction left them, as in a studio predicting image
after image, not as the other variant left them (the straight post-processing allocates and frees
~0.5 GB for D1; without the lead-in the D1 fast forward measured 0.91 of the straight one in CPU
time, with it 0.82, as the bare networks alternating alone). The table shows medians and the
ratios of the medians, of wall-clock time and, on CPU, of the thread's CPU time
(``time.thread_time``): with ``--threads 1`` every op runs on the calling thread, so its CPU time is
the work done, whatever share of a core a loaded machine gave the process (D1 forward, 7 reps at
load 8-10: per-rep wall ratios 0.45-2.4, per-rep CPU-time ratios 0.82-0.87); the median of the
per-rep ratios is printed too. With more threads the CPU column is omitted (the pool's threads are
not counted).
Stages (hooks on the submodules, CUDA-synchronised): ``preprocess`` (load, official resize,
normalise + pad), ``backbone``, ``pixel_decoder``, ``proposal`` (IA-guided query selection),
``decoder`` (layers and heads, without the proposal), ``postprocess`` (instances, masks at the image
size, explanation). ``forward`` = backbone to decoder. "At the floor" is the studio's call,
``predict(image, min_score=0.05)``: the same instances as ``predict(image).filter(0.05)``, whose
post-processing skips the masks of the instances that cannot reach the floor. Peak memory: the largest resident-set growth
during one prediction (sampled every 2 ms; CPU) or ``torch.cuda.max_memory_allocated`` (CUDA),
taken in the untimed lead-in run, never in a timed one (the sampler thread slows what it samples).
Mask R-CNN gets the same image, resized by its own transform to the preset's test size, random
weights (no download), ``box_detections_per_img=100``.

The images are 640x480 (4:3) synthetic scenes with a few flat shapes over noise; the tiny preset
uses the studio's demo model (``app/assets/demo_model.safetensors``), the others random weights.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fastinst import Predictor, build_model, load_checkpoint, resolve_device  # noqa: E402
from fastinst.cuda import CudaConfig  # noqa: E402
from fastinst.fast import prepare_batch  # noqa: E402
from fastinst.predictor import Geometry  # noqa: E402

DEMO_MODEL = REPO / "app" / "assets" / "demo_model.safetensors"
STUDIO_FLOOR = 0.05  # app.project.PROPOSAL_FLOOR: the studio stores no instance below it
STAGES = ("preprocess", "backbone", "pixel_decoder", "proposal", "decoder", "postprocess")


def scene(seed: int, height: int = 480, width: int = 640) -> np.ndarray:
    """A ``(H,W,3)`` uint8 image: noise plus a few filled ellipses and rectangles."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.integers(60, 120, (height, width, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = int(rng.integers(0, width - 120)), int(rng.integers(0, height - 120))
        w, h = int(rng.integers(40, 160)), int(rng.integers(40, 160))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    return np.asarray(image)


class PeakMemory:
    """Peak memory growth during a block: sampled RSS on CPU, the allocator's peak on CUDA (MiB).

    ``enabled=False``: nothing is measured (``peak_mib`` NaN). The CPU sampler is a Python thread
    that wakes every 2 ms and competes for the GIL with the post-processing's Python loop, so
    timed runs never sample."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.device = device
        self.enabled = enabled
        self.peak_mib = float("nan")

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakMemory":
        if not self.enabled:
            return self
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            return self
        _release_freed_memory()  # else the heap a previous prediction freed hides this one's growth
        self.start = self.peak = self.rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def __exit__(self, *exc) -> None:
        if not self.enabled:
            return
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
            return
        self.running = False
        self.thread.join()
        self.peak_mib = (max(self.peak, self.rss()) - self.start) / 2**20


def _release_freed_memory() -> None:
    """Give the memory freed by earlier runs back to the system (glibc ``malloc_trim``), so that
    resident-set growth counts what a prediction allocates; a no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def cpu_clock_counts() -> bool:
    """Whether the calling thread's CPU time measures the work: CPU device, one torch thread."""
    return torch.get_num_threads() == 1


class StageClock:
    """Seconds of the model's stages, from forward hooks on its submodules: wall clock (``times``)
    and the calling thread's CPU time (``cpu_times``, CPU only; see :func:`cpu_clock_counts`)."""

    def __init__(self, model: torch.nn.Module, device: torch.device) -> None:
        self.device = device
        self.times: Dict[str, float] = {}
        self.cpu_times: Dict[str, float] = {}
        self._start: Dict[str, tuple] = {}
        parts = {"backbone": model.backbone, "pixel_decoder": model.pixel_decoder,
                 "proposal": model.decoder.query_proposal, "decoder": model.decoder}
        self.handles = []
        for name, module in parts.items():
            self.handles.append(module.register_forward_pre_hook(lambda m, a, name=name: self._begin(name)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, name=name: self._end(name)))

    def now(self) -> tuple:
        """``(wall seconds, thread CPU seconds)``."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter(), time.thread_time()

    def _begin(self, name: str) -> None:
        self._start[name] = self.now()

    def _end(self, name: str) -> None:
        (wall, cpu), (wall0, cpu0) = self.now(), self._start[name]
        self.times[name], self.cpu_times[name] = wall - wall0, cpu - cpu0

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def run_fastinst(predictor: Predictor, images: List[np.ndarray], min_score: float = 0.0,
                 memory: bool = False) -> Dict[str, float]:
    """One timed batch prediction -> stage seconds (+ ``total``, ``forward``, ``peak_mib``), wall
    clock, and the same with a ``cpu_`` prefix in thread CPU seconds; the network's stages are NaN
    for the onnxruntime backend (one opaque call)."""
    clock = StageClock(predictor.model, predictor.device)
    try:
        with PeakMemory(predictor.device, memory) as peak, torch.inference_mode():
            start = clock.now()
            prepared = [predictor.prepare(image) for image in images]
            batch, sizes = predictor.model.preprocess([t for t, _ in prepared])
            after_pre = clock.now()
            if predictor.onnx is not None:
                out = predictor.onnx(batch)
                padded = (int(batch.shape[-2]), int(batch.shape[-1]))
            elif predictor.accelerated is not None:  # GPU options: bucket padding, autocast, compiled graphs
                out, padded = predictor.accelerated(batch)
            else:
                batch = prepare_batch(predictor.model, batch)
                out = predictor.model(batch)
                padded = (int(batch.shape[-2]), int(batch.shape[-1]))
            after_forward = clock.now()
            # kept to the end, as predict_batch returns them: the batch's masks count in the peak
            predictions = [predictor._assemble(out, i, Geometry(padded, size, original), min_score)
                           for i, (size, (_, original)) in enumerate(zip(sizes, prepared))]
            end = clock.now()
            del predictions
    finally:
        clock.remove()
    t: Dict[str, float] = {"peak_mib": peak.peak_mib}
    for k, (times, marks) in enumerate(((clock.times, [m[0] for m in (start, after_pre, after_forward, end)]),
                                        (clock.cpu_times, [m[1] for m in (start, after_pre, after_forward, end)]))):
        prefix = "cpu_" if k else ""
        for stage in ("backbone", "pixel_decoder", "proposal", "decoder"):
            t[prefix + stage] = times.get(stage, float("nan"))
        t[prefix + "decoder"] -= t[prefix + "proposal"]
        t.update({prefix + "preprocess": marks[1] - marks[0], prefix + "forward": marks[2] - marks[1],
                  prefix + "postprocess": marks[3] - marks[2], prefix + "total": marks[3] - marks[0]})
    return t


def maskrcnn_runner(min_size: int, max_size: int, device: torch.device) -> Callable[[List[np.ndarray]], Dict[str, float]]:
    """torchvision Mask R-CNN R50-FPN (random weights) at the preset's test size, end to end."""
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=81, min_size=min_size,
                                  max_size=max_size, box_detections_per_img=100).to(device).eval()

    def run(images: List[np.ndarray], memory: bool = False) -> Dict[str, float]:
        with PeakMemory(device, memory) as peak, torch.inference_mode():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, cpu_start = time.perf_counter(), time.thread_time()
            tensors = [torch.from_numpy(im).permute(2, 0, 1).to(device).float() / 255 for im in images]
            model(tensors)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            total, cpu_total = time.perf_counter() - start, time.thread_time() - cpu_start
        return {"total": total, "cpu_total": cpu_total, "peak_mib": peak.peak_mib}

    return run


def agreement(a, b) -> Dict[str, float]:
    """How the fast path's predictions differ from the straightforward ones (same images)."""
    top = min(10, len(a.scores))
    flipped = int(np.count_nonzero(a.masks != b.masks))
    return {"top10_score_max_abs_diff": float(np.abs(a.scores[:top] - b.scores[:top]).max()),
            "same_instances": bool(np.array_equal(a.query_indices, b.query_indices) and np.array_equal(a.classes, b.classes)),
            "flipped_mask_pixels": flipped}


def bench(preset: str, batch: int, device: torch.device, reps: int, with_maskrcnn: bool,
          with_onnxruntime: bool = False, lead_in: int = 1) -> Dict[str, object]:
    if preset == "tiny" and DEMO_MODEL.is_file():
        model, info = load_checkpoint(DEMO_MODEL)
        names, weights = info.class_names, "demo model"
    else:
        torch.manual_seed(0)
        model = build_model(preset)
        names, weights = [str(i) for i in range(model.num_classes)], "random"
    straight = Predictor(model, names, device=device, fast=False)
    fast = Predictor(model, names, device=device, fast=True)
    images = [scene(i) for i in range(batch)]
    check = agreement(fast.predict(images[0]), straight.predict(images[0]))
    # each variant: memory (bool) -> one timed prediction's figures (see run_fastinst)
    variants: Dict[str, Callable] = {"straight": lambda memory: run_fastinst(straight, images, memory=memory),
                                     "fast": lambda memory: run_fastinst(fast, images, memory=memory),
                                     "fast_floor": lambda memory: run_fastinst(fast, images, STUDIO_FLOOR, memory)}
    if with_onnxruntime and device.type == "cpu":
        ort = Predictor(model, names, device=device, backend="onnxruntime")
        check["onnxruntime_vs_straight"] = agreement(ort.predict(images[0]), straight.predict(images[0]))
        variants["onnxruntime"] = lambda memory: run_fastinst(ort, images, memory=memory)
        variants["onnxruntime_floor"] = lambda memory: run_fastinst(ort, images, STUDIO_FLOOR, memory)
    if device.type == "cuda":  # the opt-in GPU options, compiled for this benchmark's one padded size
        tensor, _ = fast.prepare(images[0])
        bucket = tuple(-(-d // 32) * 32 for d in tensor.shape[-2:])
        gpu = Predictor(model, names, device=device, cuda=CudaConfig(amp="bf16", buckets=(bucket,)))
        check["fast_bf16_compiled_vs_straight"] = agreement(gpu.predict(images[0]), straight.predict(images[0]))
        variants["fast_bf16_compiled"] = lambda memory: run_fastinst(gpu, images, memory=memory)
    if with_maskrcnn:
        run_maskrcnn = maskrcnn_runner(model.input_spec.min_size, model.input_spec.max_size, device)
        variants["maskrcnn"] = lambda memory: run_maskrcnn(images, memory)
    for fn in variants.values():  # warm-up (allocator, oneDNN primitive caches, CUDA kernels)
        fn(memory=False)
    samples: Dict[str, List[Dict[str, float]]] = {name: [] for name in variants}
    load = [os.getloadavg()[0]]
    for _ in range(reps):
        for name, fn in variants.items():
            # untimed lead-in: the timed run finds memory as its own variant left it; the peak
            # memory comes from the last lead-in run (or from one more run after the timed one)
            peaks = [fn(memory=k == lead_in - 1)["peak_mib"] for k in range(lead_in)]
            sample = fn(memory=False)
            sample["peak_mib"] = peaks[-1] if peaks else fn(memory=True)["peak_mib"]
            samples[name].append(sample)
        load.append(os.getloadavg()[0])
    medians = {name: {k: statistics.median(s[k] for s in runs) for k in runs[0]} for name, runs in samples.items()}
    paired = {k: statistics.median(f[k] / s[k] for f, s in zip(samples["fast"], samples["straight"]))
              for k in ("forward", "total", "cpu_forward", "cpu_total")}
    return {"preset": preset, "weights": weights, "batch": batch, "device": str(device),
            "threads": torch.get_num_threads(), "reps": reps, "lead_in": lead_in, "topk": fast.topk, "image": "640x480",
            "agreement": check, "load_average_1min": [min(load), max(load)], "medians": medians,
            "median_paired_ratio": paired, "samples": samples}


def report(row: Dict[str, object]) -> None:
    med = row["medians"]
    s, f = med["straight"], med["fast"]
    cpu = row["device"] == "cpu" and row["threads"] == 1

    def ratio(a: Dict[str, float], b: Dict[str, float], key: str) -> str:
        """``wall ratio`` or ``wall ratio (CPU-time ratio)``."""
        text = f"{a[key] / b[key]:.2f}"
        return f"{text} (CPU {a['cpu_' + key] / b['cpu_' + key]:.2f})" if cpu else text

    load = row["load_average_1min"]
    print(f"\n{row['preset']} ({row['weights']} weights), batch {row['batch']}, {row['device']}, "
          f"{row['threads']} threads, median of {row['reps']} alternating reps (each after {row['lead_in']} untimed run(s) "
          f"of the same variant), 640x480 images; load average {load[0]:.1f}-{load[1]:.1f} during the reps")
    header = f"  {'stage':14s} {'straight ms':>12s} {'fast ms':>10s} {'fast/straight':>14s}"
    print(header + (f" {'CPU straight ms':>16s} {'CPU fast ms':>12s} {'CPU fast/straight':>18s}" if cpu else ""))
    for stage in STAGES + ("forward", "total"):
        line = f"  {stage:14s} {1000 * s[stage]:12.1f} {1000 * f[stage]:10.1f} {f[stage] / s[stage]:14.2f}"
        if cpu:
            c = "cpu_" + stage
            line += f" {1000 * s[c]:16.1f} {1000 * f[c]:12.1f} {f[c] / s[c]:18.2f}"
        print(line)
    p = row["median_paired_ratio"]
    print(f"  median of the per-rep fast/straight ratios: forward {p['forward']:.2f}, end to end {p['total']:.2f}"
          + (f"; CPU time: forward {p['cpu_forward']:.2f}, end to end {p['cpu_total']:.2f}" if cpu else ""))
    b = row["batch"]
    print(f"  images/s end to end: straight {b / s['total']:.2f}, fast {b / f['total']:.2f}")
    print(f"  peak memory growth during a prediction: straight {s['peak_mib']:.0f} MiB, fast {f['peak_mib']:.0f} MiB")
    print(f"  fast end to end / fast forward: wall {f['total'] / f['forward']:.2f}" + (f", CPU {f['cpu_total'] / f['cpu_forward']:.2f}" if cpu else "")
          + f" (all instances, top-{row['topk']})")
    fl = med["fast_floor"]
    print(f"  at the studio's floor (min_score={STUDIO_FLOOR}, what the studio asks for): end to end "
          f"{1000 * fl['total']:.1f} ms, post-processing {1000 * fl['postprocess']:.1f} ms, "
          f"end to end / fast forward wall {fl['total'] / fl['forward']:.2f}"
          + (f", CPU {fl['cpu_total'] / fl['cpu_forward']:.2f}" if cpu else "")
          + f"; /straight end to end {ratio(fl, s, 'total')}")
    if "onnxruntime" in med:
        o, of = med["onnxruntime"], med["onnxruntime_floor"]
        print(f"  onnxruntime backend: forward {1000 * o['forward']:.1f} ms (/fast forward {ratio(o, f, 'forward')}, "
              f"/straight forward {ratio(o, s, 'forward')}), end to end {1000 * o['total']:.1f} ms "
              f"(/straight {ratio(o, s, 'total')}); at the floor {1000 * of['total']:.1f} ms "
              f"(end to end / torch fast forward {of['total'] / f['forward']:.2f})")
    if "fast_bf16_compiled" in med:
        g = med["fast_bf16_compiled"]
        print(f"  fast + bf16 autocast + torch.compile (CUDA graphs): forward {1000 * g['forward']:.1f} ms, end to end "
              f"{1000 * g['total']:.1f} ms ({b / g['total']:.1f} images/s), /straight {g['total'] / s['total']:.2f}")
    if "maskrcnn" in med:
        m = med["maskrcnn"]
        print(f"  Mask R-CNN R50-FPN: {1000 * m['total']:.1f} ms ({b / m['total']:.2f} images/s), peak {m['peak_mib']:.0f} MiB; "
              f"fast/Mask R-CNN {ratio(f, m, 'total')}, straight/Mask R-CNN {ratio(s, m, 'total')}")
    print(f"  fast vs straight outputs (first image): {row['agreement']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny", "D1-R50-576"])
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-maskrcnn", action="store_true", help="skip the torchvision Mask R-CNN baseline")
    parser.add_argument("--onnxruntime", action="store_true", help="also the onnxruntime backend (CPU; exports the "
                        "network first, seconds to minutes)")
    parser.add_argument("--lead-in", type=int, default=1, help="untimed runs of a variant right before each of its "
                        "timed runs (0: each timed run follows the previous variant's, as before)")
    parser.add_argument("--json", type=Path, help="also write the rows (with every sample) here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (on a shared machine the ratios are what counts, not the times)", flush=True)
    rows = []
    for preset in args.presets:
        for batch in args.batch:
            rows.append(bench(preset, batch, device, args.reps, not args.no_maskrcnn, args.onnxruntime, args.lead_in))
            report(rows[-1])
            sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
