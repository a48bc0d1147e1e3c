"""The autoal-fast command: options, errors, and kill -9 then --resume."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from autoal_fast.cli import main
from autoal_fast.experiment import ExperimentConfig, run_experiment, strategy_names, strip_timings

SMALL = ["--dataset", "digits", "--strategies", "bald,albl", "--candidates", "entropy,coreset", "--rounds", "3",
         "--initial", "20", "--budget", "15", "--epochs", "6", "--no-plot"]


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "fashion-mnist" in out and "autoal" in out and "albl" in out and "resnet18" in out


def test_unknown_dataset_lists_valid(capsys, tmp_path):
    assert main(["run", "--dataset", "mnist-9000", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "digits" in err and "fashion-mnist" in err and ".npz" in err and "Traceback" not in err


def test_unknown_strategy_lists_valid(capsys, tmp_path):
    assert main(["run", "--strategies", "entropy,oracel", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'oracel'" in err and all(n in err for n in strategy_names()) and "oracle" in err


def test_broken_npz(capsys, tmp_path):
    p = tmp_path / "data.npz"
    p.write_bytes(b"\x00garbage" * 10)
    assert main(["run", "--dataset", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "x_train" in err


def test_fashion_mnist_absent(capsys, tmp_path):
    assert main(["run", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "none"),
                 "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_cli_run_writes_outputs(tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["run", "--strategies", "random", "--rounds", "1", "--seeds", "0,3", "--epochs", "2",
                 "--out", str(out), "--no-progress"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["seeds"] == [0, 3] and [r["seed"] for r in res["strategies"]["random"]["runs"]] == [0, 3]
    assert (out / "results.csv").exists() and (out / "learning_curves.png").exists()
    assert "random" in capsys.readouterr().out


def test_kill_9_then_resume_gives_same_results(tmp_path):
    """SIGKILL after the first checkpoint, --resume, compare with an uninterrupted run (timings aside)."""
    ref = tmp_path / "ref"
    cfg = ExperimentConfig(dataset="digits", strategies=("bald", "albl"), candidates=("entropy", "coreset"),
                           rounds=3, initial=20, budget=15, seeds=(0,), epochs=6)
    run_experiment(cfg, out=str(ref), progress=False, verbose=False, plot=False)

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "autoal_fast.cli", "run", *SMALL, "--seeds", "0", "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = out / "checkpoint.pt"
    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ck.exists(), "no checkpoint was written before the kill"
    partial = out / "results.json"
    assert not partial.exists() or not json.loads(partial.read_text())["complete"], "the run ended before the kill"

    r = subprocess.run([sys.executable, "-m", "autoal_fast.cli", "run", "--resume", "--out", str(out),
                        "--no-progress", "--no-plot"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    a = json.loads((ref / "results.json").read_text())
    b = json.loads(partial.read_text())
    assert b["complete"] and strip_timings(a) == strip_timings(b)


@pytest.mark.slow
def test_default_run_no_arguments(tmp_path):
    """`autoal-fast run` with no options: the real default (all strategies, 3 seeds, digits)."""
    r = subprocess.run([sys.executable, "-m", "autoal_fast.cli", "run", "--no-progress"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "autoal_runs" / "digits" / "results.json").read_text())
    assert set(res["strategies"]) == set(strategy_names()) and res["complete"]
    assert (tmp_path / "autoal_runs" / "digits" / "learning_curves.png").exists()


def test_report_merges_runs(tmp_path, capsys):
    common = ["--rounds", "1", "--seeds", "0", "--epochs", "2", "--no-progress", "--no-plot"]
    assert main(["run", "--strategies", "entropy", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["run", "--strategies", "random", "--out", str(tmp_path / "b"), *common]) == 0
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b" / "results.json"), "--out", str(tmp_path / "m")]) == 0
    res = json.loads((tmp_path / "m" / "results.json").read_text())
    assert list(res["strategies"]) == ["entropy", "random"] and res["config"]["strategies"] == ["entropy", "random"]
    assert "x entropy" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "m1")]) == 0
    assert "'entropy' of results #2 left out" in capsys.readouterr().err
    assert main(["run", "--strategies", "margin", "--out", str(tmp_path / "c"), *common[:-4], "--epochs", "3",
                 "--no-progress", "--no-plot"]) == 0
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "m2")]) == 2
    assert "differ in ['epochs']" in capsys.readouterr().err


def test_strategy_failure_names_strategy_round_and_resume(tmp_path, capsys, monkeypatch):
    import autoal_fast.experiment.loop as E

    def boom(name, pool, k, **kw):
        raise ValueError("scores are NaN")

    monkeypatch.setattr(E, "query_indices", boom)
    assert main(["run", "--strategies", "random", "--rounds", "1", "--seeds", "0", "--epochs", "1",
                 "--out", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "'random' failed at seed 0, round 0" in err and "scores are NaN" in err and "--resume" in err
