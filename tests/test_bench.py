"""``eval.bench``: the speed benchmark runs end to end on tiny models and writes complete, well-formed results.

Timings are not checked (CI machines are shared and noisy); the structure is: every method / batch-size row is there,
baseline rows have ratio 1.0, every generated run had exactly ``--new-tokens`` tokens (the benchmark raises otherwise).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import GOLDEN, PROJECT_ROOT
from eval.bench import cli as bench_cli
from eval.bench import names as bench_names
from eval.bench import timing

GOLDEN_LLAVA = GOLDEN / "tiny-llava-v1.5"
TOP_FIELDS = ("device", "dtype", "model", "attn", "date", "torch", "transformers", "rows")
ROW_FIELDS = ("method", "batch_size", "prefill_ms", "ms_per_token", "tokens_per_s", "peak_mem_mb", "ratio_to_baseline",
              "wall_s", "user_s", "sys_s")


def check_result(result: dict, methods: list[str], batch_sizes: list[int], attn: str) -> None:
    for field in TOP_FIELDS:
        assert field in result, field
    assert result["attn"] == attn
    assert result["dtype"] == "float32"
    assert result["device"].startswith("cpu")
    rows = result["rows"]
    assert sorted((r["method"], r["batch_size"]) for r in rows) == sorted((m, b) for m in methods for b in batch_sizes)
    for row in rows:
        for field in ROW_FIELDS:
            assert field in row, (row["method"], field)
        assert row["prefill_ms"] > 0 and row["peak_mem_mb"] >= 0
        assert isinstance(row["ms_per_token"], float) and isinstance(row["tokens_per_s"], float)
        assert isinstance(row["ratio_to_baseline"], float)
        if row["method"] == "baseline":
            assert row["ratio_to_baseline"] == 1.0
        if row["method"] in ("beam", "opera") and "beam" in methods:  # beam searches: also against plain beam search
            assert row["ratio_to_beam"] == (1.0 if row["method"] == "beam" else
                                            round(row["ms_per_token"] / next(r["ms_per_token"] for r in rows if r[
                                                "method"] == "beam" and r["batch_size"] == row["batch_size"]), 4))
        assert row["wall_s"] > 0 and row["user_s"] >= 0 and row["sys_s"] >= 0


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_main_in_process(tmp_path, capsys, restore_threads):
    """All methods; SPARC with a stress tau so that its amplification path runs on random weights."""
    out = tmp_path / "bench.json"
    code = bench_cli.main(["--model-path", "tiny", "--batch-sizes", "1,2", "--new-tokens", "3", "--repeats", "1",
                       "--warmup", "0", "--threads", "1", "--sparc-tau", "-1", "--out", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    check_result(result, bench_cli.bench_methods(), [1, 2], "sdpa")
    assert result["new_tokens"] == 3 and result["model"] == "synthetic tiny-llava (random weights)"
    sparc_rows = [r for r in result["rows"] if r["method"] == "sparc"]
    assert all(r["sparc_selections_per_step"] > 0 for r in sparc_rows)
    table = capsys.readouterr().out
    assert "| method | batch |" in table and table.count("| baseline |") == 2


@pytest.mark.skipif(not GOLDEN_LLAVA.is_dir(), reason="golden checkpoint not found")
def test_subprocess_with_checkpoint(tmp_path):
    """``python -m eval.bench`` on a checkpoint in the original LLaVA layout (load_pretrained_model path)."""
    out = tmp_path / "bench.json"
    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    completed = subprocess.run(
        [sys.executable, "-m", "eval.bench", "--model-path", str(GOLDEN_LLAVA), "--methods", "vcd",
         "--batch-sizes", "1,2", "--new-tokens", "2", "--repeats", "1", "--warmup", "0", "--device", "cpu",
         "--threads", "1", "--sample", "--clock", "process", "--out", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(out.read_text())
    check_result(result, ["baseline", "vcd"], [1, 2], "sdpa")  # baseline is added for the ratios
    assert result["family"] == "llava" and result["clock"] == "process" and result["decoding"].startswith("sampling")


@pytest.mark.parametrize(
    "name, family, expected",
    [
        ("tiny", None, "tiny-llava"),
        ("7b", "instructblip", "7b-instructblip"),
        ("tiny-llava_next", None, "tiny-llava_next"),
        ("TINY-llava-next", "llava_next", "tiny-llava_next"),
        ("7b:instructblip", None, "7b-instructblip"),
        ("/models/llava-v1.5-7b", None, "/models/llava-v1.5-7b"),
        ("./tiny", None, "./tiny"),
    ],
)
def test_model_path_names(name, family, expected):
    assert bench_names.model_name(name, family) == expected


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model-path", "tiny", "--methods", "baseline,foo"], "unknown method"),
        (["--model-path", "tiny", "--batch-sizes", "1,0"], "positive integers"),
        (["--model-path", "tiny", "--batch-sizes", "a"], "comma-separated integers"),
        (["--model-path", "tiny", "--new-tokens", "1"], "at least 2"),
        (["--model-path", "tiny-llava", "--family", "instructblip"], "names family"),
        (["--model-path", "tiny", "--attn", "flash"], "invalid choice"),
        (["--model-path", "tiny", "--clock", "process", "--device", "cuda"], "--clock process"),
        ([], "--model-path"),
        (["--model-path", "tiny", "--sparc-tau", "nan"], "expected a finite number"),
        (["--model-path", "tiny", "--sparc-tau=-inf"], "expected a finite number"),
    ],
)
def test_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_checkpoint(tmp_path, capsys):
    code = bench_cli.main(["--model-path", str(tmp_path / "nothing-here"), "--device", "cpu"])
    assert code == 2
    assert "cannot load --model-path" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_cli.main(["--help"])
    assert exc.value.code == 0
    assert "--new-tokens" in capsys.readouterr().out


def test_ratios_and_summary():
    samples = [timing.Sample(10.0, [2.0, 2.0, 2.0], 16.0, 1.0, 1.0), timing.Sample(12.0, [4.0, 4.0, 4.0], 24.0, 2.0, 2.0)]
    rows = [timing.summarise("baseline", 2, samples[:1]), timing.summarise("sparc", 2, samples[1:])]
    timing.add_ratios(rows)
    assert rows[0]["ratio_to_baseline"] == 1.0 and rows[1]["ratio_to_baseline"] == 2.0
    assert rows[0]["tokens_per_s"] == 1000.0 and rows[1]["peak_mem_mb"] == 2.0
