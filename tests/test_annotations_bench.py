"""The benchmark script runs end to end (at a tiny size) and prints every figure."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_annotations.py"


def test_benchmark_runs_at_a_small_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    spec = importlib.util.spec_from_file_location("bench_annotations", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    figures = bench.main(["--images", "20", "--per-image", "5", "--big", "30",
                          "--workdir", str(tmp_path), "--polygons"])
    assert set(figures) == {"import_s", "export_s", "export_polygons_s", "crowded_write_s",
                            "crowded_load_s", "crowded_load_decode_s"}
    assert all(value > 0 for value in figures.values())
    printed = capsys.readouterr().out
    assert "20 images, 100 instances" in printed
    assert "import:" in printed and "export:" in printed
    assert "one image with 30 instances" in printed
