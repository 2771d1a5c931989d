"""Does the one COCO reader stay linear on a big file of tiny annotations (issue 20, "Files")?

    python benchmarks/bench_coco_reader_scaling.py                      # 50,000 and 200,000 annotations
    python benchmarks/bench_coco_reader_scaling.py --sizes 100000 1000000   # ~100 MB: minutes on 2 cores

Each size is a generated file of 3-point polygons (the tiniest valid instance) on 200 images,
written with the faults real exports carry that take the reader's slower paths: string ids, every
annotation id repeated 10 times, ``iscrowd`` as a string. Timed: :func:`annotations.coco_parse.read_coco`
(JSON load and every repair, no image files) in this process. Printed: seconds, microseconds per
annotation, and each size's per-annotation time as a ratio of the smallest size's (about 1 when
linear; a quadratic step would grow it with the size).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotations.coco_parse import read_coco  # noqa: E402

IMAGES = 200


def tiny_file(folder: Path, count: int) -> Path:
    images = [{"id": f"img-{k}", "file_name": f"{k}.png", "width": 64, "height": 48} for k in range(IMAGES)]
    annotations = [{"id": str(i // 10), "image_id": f"img-{i % IMAGES}", "category_id": 1, "iscrowd": "0",
                    "segmentation": [[i % 60, i % 44, i % 60 + 3, i % 44, i % 60, i % 44 + 3]]}
                   for i in range(count)]
    path = folder / f"tiny-{count}.json"
    path.write_text(json.dumps({"images": images, "categories": [{"id": 1, "name": "dot"}],
                                "annotations": annotations}))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[50_000, 200_000])
    args = parser.parse_args()
    base = None
    with tempfile.TemporaryDirectory() as tmp:
        read_coco(tiny_file(Path(tmp), 1000))   # warm-up (imports, first-call costs), not timed
        for count in args.sizes:
            path = tiny_file(Path(tmp), count)
            start = time.perf_counter()
            parsed = read_coco(path)
            seconds = time.perf_counter() - start
            per = seconds / count * 1e6
            base = base or per
            print(f"{count:>9,} annotations  {path.stat().st_size / 1e6:6.1f} MB  read {seconds:7.2f} s  "
                  f"{per:6.1f} us/annotation  ratio {per / base:4.2f}  "
                  f"({len(parsed.annotations):,} kept, {len(parsed.report.findings):,} findings)", flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
