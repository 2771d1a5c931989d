"""The domain-shift scenario through the studio's public API with the small preset: the demo
model on shifted-domain images (new colours and textures, one new class), the script plays the
person using ground truth, fine-tuning runs in a worker; held-out mask AP rises by at least 15
points and the Fine-tune view shows both numbers. Figures and times are printed (``pytest -s``).

The full scenario (20 images, one-click defaults) is marked slow (about 4 minutes on the shared
2-core machine); the default suite runs the same script on 8 images with 30 iterations."""
from __future__ import annotations

from pathlib import Path

import pytest
from gradio_client import Client

from app.config import StudioConfig
from app.demo import DEMO_WEIGHTS
from app.startup import open_project
from test_app_support import served
from finetune_scenario import run_scenario, shifted_domain

pytestmark = pytest.mark.skipif(not DEMO_WEIGHTS.is_file(), reason="the shipped demo model is needed")


def scenario(tmp_path: Path, num_images: int, heldout: int, iterations: int) -> None:
    gt = shifted_domain(tmp_path / "shifted", num_images)
    config = StudioConfig(images=gt.parent / "images", weights=DEMO_WEIGHTS, data_dir=tmp_path / "studio-data",
                          device="cpu", cache_size=8)
    project = open_project(config, log=lambda message: None)
    with served(project) as url:
        result = run_scenario(Client(url, verbose=False), project, gt, iterations=iterations)
    print(f"\nscenario ({num_images} images): held-out mask AP {result.ap_before:.1f} -> {result.ap_after:.1f} on "
          f"{result.heldout_images} images; review {result.review_s:.0f} s ({result.actions}), training "
          f"{result.train_s:.0f} s ({result.iterations} iterations)")
    assert result.heldout_images == heldout
    assert result.ap_after - result.ap_before >= 15.0, result.metrics_text
    assert f"{result.ap_before:.1f}" in result.metrics_text and f"{result.ap_after:.1f}" in result.metrics_text
    run = project.store.list_training_runs(project.dataset_id)[-1]
    version = project.store.model_version(run.model_version)
    assert version.parent == project.model.version and version.dataset_revision == run.dataset_revision
    assert "cross" in project.class_names()


@pytest.mark.slow
def test_domain_shift_scenario_20_images_one_click(tmp_path: Path) -> None:
    scenario(tmp_path, num_images=20, heldout=4, iterations=0)


def test_domain_shift_scenario_small(tmp_path: Path) -> None:
    scenario(tmp_path, num_images=8, heldout=2, iterations=30)
