"""Killing a run and resuming it gives bit-identical weights to an uninterrupted run (same seed),
both after a crash (SIGKILL: resume from the last periodic checkpoint) and after a graceful stop
(SIGTERM: checkpoint at the current iteration)."""
import json
import signal
import time

import pytest
import torch

from training.checkpoints import load_resume
from test_training_helpers import fast_args, run_train, start_train, tiny_dataset, weights

MAX_ITERS = 7


def iterations_logged(out):
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["iteration"] for line in path.read_text().splitlines() if "loss" in line]


def interrupt_then_resume(json_path, out, sig):
    proc = start_train(fast_args(json_path, out, MAX_ITERS))
    deadline = time.time() + 120
    while not any(it >= 3 for it in iterations_logged(out)):
        assert proc.poll() is None, "the run ended before it could be interrupted:\n" + proc.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    before = iterations_logged(out)
    assert max(before) < MAX_ITERS, "the interrupted run should not have finished"
    saved = load_resume(out / "last_checkpoint.pt")["iteration"]  # weights_only=True load
    result = run_train(fast_args(json_path, out, MAX_ITERS))
    assert result.returncode == 0, result.stderr
    after = iterations_logged(out)[len(before):]
    assert after[0] == saved + 1  # the second run resumed, it did not start over
    return saved, before


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    json_path = tiny_dataset(root / "data")
    result = run_train(fast_args(json_path, root / "straight", MAX_ITERS))
    assert result.returncode == 0, result.stderr
    return json_path, weights(root / "straight" / "model_final.safetensors"), root


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_sigkill_then_resume_matches_uninterrupted(uninterrupted):
    json_path, reference, root = uninterrupted
    saved, before = interrupt_then_resume(json_path, root / "killed", signal.SIGKILL)
    assert saved % 2 == 0 and saved < max(before) + 1  # the last periodic checkpoint
    assert_same(weights(root / "killed" / "model_final.safetensors"), reference)


def test_sigterm_saves_current_iteration_and_resume_matches(uninterrupted):
    json_path, reference, root = uninterrupted
    saved, before = interrupt_then_resume(json_path, root / "stopped", signal.SIGTERM)
    assert saved == max(before)  # graceful stop checkpoints the iteration it finished
    assert_same(weights(root / "stopped" / "model_final.safetensors"), reference)


def test_straight_run_differs_from_initial_weights(uninterrupted):
    from fastinst import build_model
    _, reference, _ = uninterrupted
    torch.manual_seed(42)
    init = build_model("tiny", num_classes=3).state_dict()
    assert any(not torch.equal(init[k], reference[k]) for k in reference if reference[k].is_floating_point())
