"""The score kernel's device (lfr.score.kernel.kernel_device): the task's GPU where torch sees CUDA, else the CPU
with a warning when Spark assigned a GPU. No GPU here: the device code paths (torch float32 screen, separate
device buffers copied back to the host) run on ``cpu:0`` with the same exactness checks as the CPU screens."""
import logging

import numpy as np
import pytest

from lfr.score import kernel
from tests.test_score_precision import assert_identical, brute_topk, near_ties


@pytest.fixture
def device_path(monkeypatch):
    """Every screen built as for an accelerator (``device != 'cpu'``), on the CPU."""
    monkeypatch.setattr(kernel, "kernel_device", lambda: "cpu:0")


@pytest.mark.parametrize("precision", ["fp32", "bf16-screen"])
def test_the_device_screens_give_the_exact_top_k(device_path, precision):
    q, b = near_ties(seed=7, n_band=300, n_noise=600, m=4)
    import torch

    screen = kernel.dense_screen(torch, q, b, 3, precision)
    assert type(screen).__name__ == ("TorchFp32Screen" if precision == "fp32" else "Bf16Screen")
    got = kernel.block_topk(q, b, 10, precision=precision, chunk_elems=len(b) * 3)
    assert_identical(got, brute_topk(q, b, 10))


def test_the_hybrid_on_the_device_path_equals_the_host_path(device_path, monkeypatch):
    from tests.test_score_csls import test_hybrid_kernel_on_hub_aware_rows_equals_brute_force as hybrid_check

    hybrid_check("fp32")
    hybrid_check("bf16-screen")


def test_a_task_with_a_gpu_uses_it_where_torch_sees_cuda(monkeypatch):
    import torch

    monkeypatch.setattr(kernel, "task_gpus", lambda: ["1"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert kernel.kernel_device() == "cuda:1"
    monkeypatch.setattr(kernel, "task_gpus", lambda: [])
    assert kernel.kernel_device() == "cuda"


def test_a_gpu_torch_cannot_use_falls_back_to_the_cpu_with_a_warning(monkeypatch, caplog):
    import torch

    kernel._note_device.cache_clear()
    monkeypatch.setattr(kernel, "task_gpus", lambda: ["0"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level(logging.WARNING, logger="lfr.score.kernel"):
        assert kernel.kernel_device() == "cpu"
    assert "assigned GPU(s) ['0'] but torch" in caplog.text and "falling back to CPU" in caplog.text
    monkeypatch.setattr(kernel, "task_gpus", lambda: [])
    assert kernel.kernel_device() == "cpu"                       # no GPU asked for, none used: no warning
    assert np.array_equal(kernel.block_topk(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 1,
                                            precision="fp32")[1], [0, 1])


def test_outside_a_spark_task_no_gpu_is_assigned():
    assert kernel.task_gpus() == []
