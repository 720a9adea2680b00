"""bench/embed.py's plumbing (no model, no Spark): variants, rotation, cosines and the report's ratios."""
import importlib.util
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_embed", ROOT / "bench" / "embed.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_rotate_and_skip_a_default_that_is_fp32():
    mod = _bench()
    assert mod.plain_variants("bf16") == ("torch-fp32", "torch-default", "onnx-fp32", "onnx-int8")
    assert mod.plain_variants("fp32", unsorted=True) == ("torch-fp32", "onnx-fp32", "onnx-int8", "torch-unsorted")
    v = mod.plain_variants("bf16")
    assert [mod._rotated(v, p)[0] for p in range(4)] == list(v)           # each variant leads one pass
    assert all(sorted(mod._rotated(v, p)) == sorted(v) for p in range(4))
    with pytest.raises(SystemExit):
        mod.parse_args(["--quantize", "int8"])                            # int8 is an ONNX Runtime setting
    assert mod.parse_args(["--quick", "--runtime", "onnx", "--quantize", "int8"]).n == 64


def test_report_ratios_and_cosines_are_against_torch_fp32(capsys):
    mod = _bench()
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(8)]
    ref = {i: rng.normal(size=4).astype(np.float32) for i in ids}
    noisy = {i: v + 0.1 * rng.normal(size=4).astype(np.float32) for i, v in ref.items()}
    speed = {"torch-fp32": 10.0, "torch-default": 20.0, "onnx-fp32": 9.0, "onnx-int8": 16.0}
    plain = {"variants": {v: {"seconds": [1.0, 1.0], "model_load_seconds": 0.1, "cold_items_per_s": s / 2,
                              "warm_items_per_s": s} for v, s in speed.items()},
             "vectors": {"torch-fp32": ref, "torch-default": ref, "onnx-fp32": ref, "onnx-int8": noisy}}
    env = {"cpu_capability": "AVX512", "native_bf16": "avx512_bf16", "isa_caps": {}, "torch": "t", "onnxruntime": "o",
           "precision": "auto -> bf16", "precision_requested": "auto", "precision_resolved": "bf16", "n": 8,
           "batch_size": 64, "chunk": 1024, "tokens_mean": 10.0, "tokens_max": 20}
    spark = {"seconds": [2.0, 1.0], "cold_items_per_s": 4.0, "warm_items_per_s": 8.0, "partitions": 2,
             "runtime": "onnx", "quantize": "int8", "vectors": {i: list(map(float, v)) for i, v in noisy.items()}}
    a = types.SimpleNamespace(domain="books", procs=2)
    out = mod.report(a, env, plain, spark)
    rows = out["plain"]
    assert rows["onnx-fp32"]["ratio_to_torch_fp32"] == 0.9 and rows["onnx-int8"]["ratio_to_torch_fp32"] == 1.6
    assert rows["onnx-int8"]["ratio_to_torch_default"] == 0.8
    assert rows["onnx-fp32"]["min_cosine_to_torch_fp32"] == pytest.approx(1.0)
    lo, mean = mod.cosines(noisy, ref)
    assert rows["onnx-int8"]["min_cosine_to_torch_fp32"] == lo < mean < 1.0
    assert out["spark_peer"] == "onnx-int8" and out["ratio_spark_plain"] == 0.5 and out["max_abs_diff"] < 1e-6
    printed = capsys.readouterr().out
    assert "target >= 0.95" in printed and "target >= 1.5" in printed
