"""Benchmark of the annotation store: COCO import, COCO export, loading one crowded image.

    python benchmarks/bench_annotations.py                       # 10,000 images / 100,000 instances
    python benchmarks/bench_annotations.py --url postgresql://user@127.0.0.1:5432/bench
    python benchmarks/bench_annotations.py --images 100 --per-image 5 --big 50   # quick

The generated COCO file mixes the encodings a real one has: 80 % polygons (star-shaped, 8-16
points, some with two parts), 15 % compressed RLE, 5 % uncompressed crowd RLE, at 640x480. File
generation is not timed. Timings are wall-clock seconds of the store calls; the database is a
fresh SQLite file in a temporary folder unless ``--url`` names another (empty) one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations import Store  # noqa: E402

HEIGHT, WIDTH = 480, 640


def _star_polygon(rng: np.random.Generator) -> list[float]:
    points = int(rng.integers(8, 17))
    cx, cy = rng.uniform(0, WIDTH), rng.uniform(0, HEIGHT)
    angles = np.sort(rng.uniform(0, 2 * np.pi, points))
    radii = rng.uniform(10, 80) * rng.uniform(0.5, 1.0, points)
    xs = np.clip(cx + radii * np.cos(angles), 0, WIDTH)
    ys = np.clip(cy + radii * np.sin(angles), 0, HEIGHT)
    return np.round(np.stack([xs, ys], 1).ravel(), 2).tolist()


def _blob(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    cy, cx, radius = rng.uniform(50, HEIGHT - 50), rng.uniform(50, WIDTH - 50), rng.uniform(15, 60)
    blob = (yy - cy) ** 2 + (xx - cx) ** 2 < radius**2
    blob &= ~((yy - cy) ** 2 + (xx - cx) ** 2 < (radius / 3) ** 2)  # a hole
    return blob


def _uncompressed_runs(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F").astype(np.int8)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat[0] else runs


def make_document(num_images: int, per_image: int, seed: int = 0) -> dict[str, Any]:
    """A COCO instances document of ``num_images`` x ``per_image`` instances."""
    rng = np.random.default_rng(seed)
    pool = [_blob(rng) for _ in range(32)]
    compressed = [
        coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() for m in pool
    ]
    uncompressed = [_uncompressed_runs(m) for m in pool[:8]]
    annotations = []
    for ann_id in range(num_images * per_image):
        draw = rng.random()
        if draw < 0.80:
            parts = [_star_polygon(rng) for _ in range(1 if rng.random() < 0.9 else 2)]
            segmentation: Any = parts
        elif draw < 0.95:
            segmentation = {"size": [HEIGHT, WIDTH], "counts": compressed[ann_id % 32]}
        else:
            segmentation = {"size": [HEIGHT, WIDTH], "counts": uncompressed[ann_id % 8]}
        annotations.append({
            "id": ann_id + 1, "image_id": ann_id // per_image + 1,
            "category_id": 2 * int(rng.integers(1, 21)), "segmentation": segmentation,
            "iscrowd": int(draw >= 0.95),
        })
    return {
        "images": [{"id": i + 1, "file_name": f"img_{i:06d}.jpg", "width": WIDTH, "height": HEIGHT}
                   for i in range(num_images)],
        "categories": [{"id": 2 * c, "name": f"class{c}"} for c in range(1, 21)],
        "annotations": annotations,
    }


def _timed(function, *args, **kwargs) -> tuple[float, Any]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _crowded_image(store: Store, dataset: int, instances: int, repeats: int) -> dict[str, float]:
    """Add an image with ``instances`` predictions, then time loading it (records, then masks)."""
    rng = np.random.default_rng(1)
    image = store.add_image(dataset, "crowded.jpg", WIDTH, HEIGHT)
    masks = np.zeros((instances, HEIGHT, WIDTH), bool)
    for index in range(instances):
        y, x = int(rng.integers(0, HEIGHT - 40)), int(rng.integers(0, WIDTH - 40))
        masks[index, y:y + int(rng.integers(5, 40)), x:x + int(rng.integers(5, 40))] = True
    write_s, _ = _timed(store.replace_predictions, image, masks, [2] * instances,
                        rng.random(instances).tolist(), "bench")
    load, decode = [], []
    for _ in range(repeats):
        seconds, records = _timed(store.annotations, image)
        load.append(seconds)
        decode.append(_timed(lambda: [record.mask for record in records])[0] + seconds)
        assert len(records) == instances
    return {"write_s": write_s, "load_s": statistics.median(load),
            "load_decode_s": statistics.median(decode)}


def run(num_images: int, per_image: int, big: int, url: str | None, workdir: Path,
        repeats: int = 5, polygons: bool = False) -> dict[str, float]:
    """Run the benchmark; returns the figures (seconds) and prints them."""
    document = make_document(num_images, per_image)
    json_path = workdir / "bench_instances.json"
    json_path.write_text(json.dumps(document))
    store = Store(url or f"sqlite:///{workdir / 'bench.db'}", user="bench")
    dataset = store.create_dataset(f"bench-{time.time_ns()}", workdir)
    figures: dict[str, float] = {}
    figures["import_s"], report = _timed(store.import_coco, dataset, json_path, check_files=False)
    assert report.annotations_added == num_images * per_image
    figures["export_s"], out = _timed(store.export_coco, dataset, workdir / "export.json")
    if polygons:
        figures["export_polygons_s"], _ = _timed(
            store.export_coco, dataset, workdir / "export_polygons.json", polygons=True)
    crowded = _crowded_image(store, dataset, big, repeats)
    figures.update({f"crowded_{key}": value for key, value in crowded.items()})
    backend = store.engine.dialect.name
    store.close()
    _print(figures, backend, num_images, per_image, big, json_path, out)
    return figures


def _print(figures: dict[str, float], backend: str, num_images: int, per_image: int, big: int,
           json_path: Path, out: Path) -> None:
    instances = num_images * per_image
    print(f"annotation store benchmark ({backend})")
    print(f"  COCO file: {num_images:,} images, {instances:,} instances, "
          f"{json_path.stat().st_size / 1e6:.1f} MB")
    print(f"  import:  {figures['import_s']:8.2f} s  ({instances / figures['import_s']:,.0f} "
          f"instances/s)")
    print(f"  export:  {figures['export_s']:8.2f} s  (RLE, {out.stat().st_size / 1e6:.1f} MB)")
    if "export_polygons_s" in figures:
        print(f"  export:  {figures['export_polygons_s']:8.2f} s  (polygons)")
    print(f"  one image with {big} instances: write {figures['crowded_write_s'] * 1e3:.0f} ms, "
          f"load {figures['crowded_load_s'] * 1e3:.1f} ms, load + decode masks "
          f"{figures['crowded_load_decode_s'] * 1e3:.1f} ms")


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--per-image", type=int, default=10)
    parser.add_argument("--big", type=int, default=300, help="instances on the crowded image")
    parser.add_argument("--url", help="database URL (default: SQLite in a temporary folder)")
    parser.add_argument("--workdir", type=Path, help="where to write files (default: temporary)")
    parser.add_argument("--polygons", action="store_true", help="also time a polygon export")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-annotations-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        return run(args.images, args.per_image, args.big, args.url, workdir,
                   polygons=args.polygons)


if __name__ == "__main__":
    main()
