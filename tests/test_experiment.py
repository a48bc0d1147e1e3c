"""autoal_fast.experiment: the AL loop, its reports, checkpoints; the ALBL bandit; the task models."""
import csv
import json
import os

import numpy as np
import pytest
import torch

from autoal_fast import PoolOutputs
from autoal_fast.experiment.alb import ALBL
from autoal_fast.experiment import (ExperimentConfig, aubc, autoal_params, format_table, resolve_strategies,
                                    run_experiment, strategy_names, strip_timings)
from autoal_fast.experiment.models import MLP, ResNet18, SmallCNN, build_model

TINY = dict(dataset="digits", rounds=2, initial=20, budget=15, seeds=(0, 1), epochs=4, candidates=("margin", "coreset"))


def _has_autoal():
    try:
        from autoal_fast.autoal import AutoAL  # noqa: F401
    except ImportError:
        return False
    return True


def test_aubc_is_normalised_trapezoid():
    assert aubc([10, 20, 30], [0.5, 0.7, 0.7]) == pytest.approx((0.6 * 10 + 0.7 * 10) / 20)
    assert aubc([10, 30], [0.4, 0.8]) == pytest.approx(0.6)
    assert aubc([10], [0.4]) == pytest.approx(0.4)


def test_resolve_strategies():
    assert resolve_strategies("all") == strategy_names()
    assert resolve_strategies("entropy, albl,entropy") == ["entropy", "albl"]
    assert "autoal" in strategy_names() and "albl" in strategy_names() and "random" in strategy_names()
    with pytest.raises(ValueError) as e:
        resolve_strategies("entropy,nope")
    assert "'nope'" in str(e.value) and all(n in str(e.value) for n in strategy_names())


@pytest.mark.parametrize("bad", [dict(rounds=-1), dict(seeds=()), dict(seeds=(1, 1)), dict(model="vgg"),
                                 dict(candidates=("entropy", "autoal")), dict(device="tpu"), dict(n_mc=1)])
def test_config_validation(bad):
    with pytest.raises(ValueError):
        ExperimentConfig(**bad).validate()


def test_tiny_run_outputs(tmp_path):
    cfg = ExperimentConfig(strategies=("entropy", "coreset", "albl"), **TINY)
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert on_disk["complete"] is True and on_disk["config"]["strategies"] == ["entropy", "coreset", "albl"]
    for name in ("entropy", "coreset", "albl"):
        s = on_disk["strategies"][name]
        assert len(s["runs"]) == 2 and 0.0 < s["aubc_mean"] <= 1.0 and s["aubc_std"] >= 0.0
        for run in s["runs"]:
            assert [r["labeled"] for r in run["rounds"]] == [20, 35, 50]
            assert all(0.0 <= r["test_acc"] <= 1.0 and r["train_seconds"] >= 0 for r in run["rounds"])
            assert all(r["query_seconds"] >= 0 for r in run["rounds"][:-1]) and run["rounds"][-1]["query_seconds"] is None
            # the batch's make-up by true class: one count per digit class, summing to the budget
            assert all(len(r["batch_classes"]) == 10 and sum(r["batch_classes"]) == 15 and min(r["batch_classes"]) >= 0
                       for r in run["rounds"][:-1]) and "batch_classes" not in run["rounds"][-1]
            assert run["aubc"] == pytest.approx(aubc([r["labeled"] for r in run["rounds"]],
                                                     [r["test_acc"] for r in run["rounds"]]))
    # same seed, same initial set and model seed: round 0 is identical for every strategy
    r0 = {n: on_disk["strategies"][n]["runs"][0]["rounds"][0]["test_acc"] for n in ("entropy", "coreset", "albl")}
    assert len(set(r0.values())) == 1
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2 * 3 and set(rows[0]) >= {"strategy", "seed", "round", "labeled", "test_acc",
                                                       "train_seconds", "query_seconds"}
    png = tmp_path / "learning_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = format_table(res)
    assert "entropy" in table and "±" in table


def test_resume_in_process_matches_and_checks_config(tmp_path):
    cfg = ExperimentConfig(strategies=("random",), **dict(TINY, seeds=(0,)))
    a = run_experiment(cfg, out=str(tmp_path / "a"), progress=False, verbose=False, plot=False)
    # resuming a finished run changes nothing
    b = run_experiment(None, out=str(tmp_path / "a"), resume=True, progress=False, verbose=False, plot=False)
    assert strip_timings(a) == strip_timings(b)
    with pytest.raises(ValueError, match=r"differs from the checkpoint .* \['epochs'\]"):
        run_experiment(ExperimentConfig(strategies=("random",), **dict(TINY, seeds=(0,), epochs=5)),
                       out=str(tmp_path / "a"), resume=True, progress=False, verbose=False)


@pytest.mark.skipif(not _has_autoal(), reason="autoal_fast.autoal has not landed")
def test_autoal_memory_is_recorded_per_round(tmp_path):
    cfg = ExperimentConfig(strategies=("autoal",), autoal={"pretrain_steps": 20, "search_steps": 20,
                                                           "memory": "rounds"}, **dict(TINY, seeds=(0,)))
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False, plot=False)
    rounds = res["strategies"]["autoal"]["runs"][0]["rounds"]
    assert "memory" not in rounds[0]["info"]  # nothing remembered in the first round
    assert set(rounds[1]["info"]["memory"]) == {"margin", "coreset"}


def test_warm_start_runs(tmp_path):
    cfg = ExperimentConfig(strategies=("random",), warm_start=True, **dict(TINY, seeds=(0,)))
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False, plot=False)
    assert len(res["strategies"]["random"]["runs"][0]["rounds"]) == 3


@pytest.mark.skipif(not _has_autoal(), reason="autoal_fast.autoal has not landed")
def test_autoal_strategy_runs(tmp_path):
    cfg = ExperimentConfig(strategies=("autoal",), autoal={"pretrain_steps": 20, "search_steps": 20},
                           **dict(TINY, seeds=(0,)))
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False, plot=True)
    rounds = res["strategies"]["autoal"]["runs"][0]["rounds"]
    assert [r["labeled"] for r in rounds] == [20, 35, 50]
    assert set(rounds[0]["info"]["mean_weights"]) == {"margin", "coreset"}
    share = rounds[0]["info"]["weight_share"]  # the paper's weight figure, per round
    assert set(share) == {"margin", "coreset"} and sum(share.values()) == pytest.approx(1.0, abs=1e-4)
    assert (tmp_path / "weights.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from autoal_fast.experiment.reports import weight_share_by_round

    labeled, names, shares = weight_share_by_round(res)
    assert labeled == [20, 35] and names == ["margin", "coreset"] and shares.shape == (2, 2)
    # the folder records the AutoAL that ran, with the defaults of the day resolved
    saved = json.loads((tmp_path / "results.json").read_text())["autoal_params"]
    assert saved == autoal_params(cfg) and saved["search_steps"] == 20 and saved["explore"] == 0.1
    assert saved["strategies"] == ["margin", "coreset"] and "seed" not in saved and "budget" not in saved
    other = ExperimentConfig(strategies=("autoal",), autoal={"pretrain_steps": 20, "search_steps": 20,
                                                             "explore": 0.0}, **dict(TINY, seeds=(0,)))
    assert autoal_params(other)["explore"] == 0.0 and autoal_params(other) != saved
    assert autoal_params(ExperimentConfig(strategies=("random",), **TINY)) is None


# ----------------------------------------------------------------------------- ALBL
def _pool(n=60, c=4, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return PoolOutputs(torch.randn(n, c, generator=g), torch.randn(n, d, generator=g))


def test_albl_probabilities_state_and_picks():
    b = ALBL(["margin", "coreset"], n_rounds=5)
    assert b.arms == ["margin", "coreset", "random"]
    p = b.arm_probabilities()
    assert p.sum() == pytest.approx(1.0) and (p >= b.p_min).all()
    pool, lab = _pool(), _pool(10, seed=1)
    y = torch.arange(60) % 4
    seen = []
    for r in range(4):
        idx = b.query(pool, 7, labeled=lab, seed=r, labels=lambda i: y[i])
        assert idx.shape == (7,) and torch.unique(idx).numel() == 7 and 0 <= int(idx.min()) and int(idx.max()) < 60
        seen.append(b.history[-1]["arm"])
    assert all(h["reward"] is not None for h in b.history[:-1]) and b.history[-1]["reward"] is None
    assert all(0.0 <= h["reward"] <= 1.0 for h in b.history[:-1])
    assert not np.allclose(b.arm_probabilities(), p)  # it learned something
    c = ALBL(["margin", "coreset"], n_rounds=5)
    c.load_state_dict(b.state_dict())
    i1 = b.query(pool, 7, labeled=lab, seed=9, labels=lambda i: y[i])
    i2 = c.query(pool, 7, labeled=lab, seed=9, labels=lambda i: y[i])
    assert torch.equal(i1, i2) and b.log_w == c.log_w


def test_albl_rejects_bad_settings():
    with pytest.raises(ValueError):
        ALBL(["random"], n_rounds=3)
    with pytest.raises(ValueError):
        ALBL(["margin"], n_rounds=3, p_min=0.9)


# ----------------------------------------------------------------------------- models
@pytest.mark.parametrize("model,x", [(SmallCNN(10), torch.randn(3, 1, 28, 28)), (MLP(10, 64), torch.randn(3, 64)),
                                     (ResNet18(10), torch.randn(2, 3, 32, 32))])
def test_models_return_logits_embeddings_and_head(model, x):
    model.eval()
    with torch.no_grad():
        logits, emb = model(x)
        assert logits.shape == (x.shape[0], 10) and emb.ndim == 2
        torch.testing.assert_close(model.head(emb), logits)
        model.head.train()  # MC dropout over the embeddings
        assert any(isinstance(m, torch.nn.Dropout) for m in model.head.modules())
        assert not torch.equal(model.head(emb), model.head(emb))


def test_build_model_picks_by_kind():
    assert isinstance(build_model("auto", "flat", (64,), 10), MLP)
    assert isinstance(build_model("auto", "grey", (1, 28, 28), 10), SmallCNN)
    assert isinstance(build_model("auto", "colour", (3, 32, 32), 10), ResNet18)
    with pytest.raises(ValueError, match="mlp"):
        build_model("cnn", "flat", (64,), 10)


def test_coin_control_picks_one_candidate_per_round(tmp_path):
    assert "coin" not in resolve_strategies("all")
    cfg = ExperimentConfig(strategies=("coin",), **dict(TINY, seeds=(0,), candidates=("margin", "badge")))
    a = run_experiment(cfg, out=str(tmp_path / "a"), progress=False, verbose=False, plot=False)
    b = run_experiment(cfg, out=str(tmp_path / "b"), progress=False, verbose=False, plot=False)
    ra, rb = (r["strategies"]["coin"]["runs"][0]["rounds"] for r in (a, b))
    assert all(r["info"]["chosen"] in ("margin", "badge") for r in ra[:-1])
    assert [r["test_acc"] for r in ra] == [r["test_acc"] for r in rb]  # seeded


def test_oracle_peeks_exactly_and_is_not_in_all(tmp_path):
    """The oracle's next-round accuracies are those the loop then measures: the chosen
    candidate's equals the next round's test accuracy."""
    assert "oracle" not in resolve_strategies("all") and resolve_strategies("oracle") == ["oracle"]
    tiny = dict(TINY, seeds=(0,), candidates=("margin", "random"))
    cfg = ExperimentConfig(strategies=("oracle", "margin", "random"), **tiny)
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False, plot=False)
    rounds = res["strategies"]["oracle"]["runs"][0]["rounds"]
    for r, nxt in zip(rounds[:-1], rounds[1:]):
        info = r["info"]
        assert set(info["next_acc"]) == {"margin", "random"}
        assert info["next_acc"][info["chosen"]] == max(info["next_acc"].values()) == nxt["test_acc"]
    first = rounds[0]["info"]["next_acc"]
    # round 1 of margin's own run is what the oracle foresaw for it (margin has no seed;
    # random's draws come from each strategy's own query seed, so they differ)
    assert res["strategies"]["margin"]["runs"][0]["rounds"][1]["test_acc"] == first["margin"]
    with pytest.raises(ValueError, match="warm_start"):
        run_experiment(ExperimentConfig(strategies=("oracle",), warm_start=True, **tiny), out=str(tmp_path / "w"),
                       progress=False, verbose=False, plot=False)


def test_paired_differences_and_spearman():
    from autoal_fast.experiment.reports import paired_differences, spearman

    runs = {"autoal": {0: 0.80, 1: 0.70, 2: 0.90}, "margin": {0: 0.78, 1: 0.71, 2: 0.85, 3: 0.5}}
    d = paired_differences(runs, "autoal")["margin"]
    diffs = np.array([0.02, -0.01, 0.05])  # seed 3 has no pair
    assert d["n"] == 3 and d["wins"] == 2 and d["losses"] == 1
    assert d["mean"] == pytest.approx(diffs.mean()) and d["se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="ref"):
        paired_differences(runs, "badge")
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([0.5, 0.5, 2, 3], [0, 1, 2, 3])[0, 1])
    assert np.isnan(spearman([1, 1], [1, 2]))


def test_autoal_can_read_the_inputs(tmp_path):
    cfg = ExperimentConfig(strategies=("autoal",), autoal={"pretrain_steps": 10, "search_steps": 10, "objective": "value"},
                           autoal_features="inputs", **dict(TINY, seeds=(0,)))
    res = run_experiment(cfg, out=str(tmp_path), progress=False, verbose=False, plot=False)
    rounds = res["strategies"]["autoal"]["runs"][0]["rounds"]
    assert [r["labeled"] for r in rounds] == [20, 35, 50] and set(rounds[0]["info"]["candidate_value"]) == {"margin", "coreset"}
    with pytest.raises(ValueError, match="autoal_features"):
        ExperimentConfig(autoal_features="pixels").validate()


def _al_benchmark(script="al_benchmark"):
    """benchmarks/<script>.py as a module (it is a script, not part of the package)."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", f"{script}.py")
    spec = importlib.util.spec_from_file_location(f"{script}_under_test", path)
    ab = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ab)
    return ab


def test_al_benchmark_refuses_a_folder_made_by_another_autoal(tmp_path):
    """benchmarks/al_benchmark.py counts a finished folder only when the AutoAL recorded in it
    is the one its label builds today (a label that named too little once reused folders made
    under other AutoAL defaults)."""
    ab = _al_benchmark()
    cfg, _ = ab._label_config("a", "autoal_prior", 0, 1)
    other, _ = ab._label_config("a", "autoal_explore_random", 0, 1)
    made = {"complete": True, "autoal_params": autoal_params(cfg)}
    assert ab.stale_params(made, cfg) == {}
    assert ab.stale_params(made, other) == {"explore_from": ("candidates", "random"), "search_steps": (0, 400)}
    assert ab.stale_params({"complete": True}, cfg) == {}  # made before folders recorded it: not checkable
    plain, _ = ab._label_config("a", "margin", 0, 1)
    assert ab.stale_params(made, plain) == {}
    out = tmp_path / "a" / "autoal_prior" / "seed0"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({"complete": True, "autoal_params": autoal_params(other)}))
    threads = torch.get_num_threads()  # run_one sets torch's thread count
    try:
        with pytest.raises(SystemExit, match="made by an AutoAL with other parameters"):
            ab.run_one(str(tmp_path), "a", "autoal_prior", 0, 1)
        (out / "results.json").write_text(json.dumps(made))
        assert ab.run_one(str(tmp_path), "a", "autoal_prior", 0, 1).endswith("done before")
    finally:
        torch.set_num_threads(threads)


def test_al_benchmark_device_reaches_the_config_and_bad_devices_fail_before_any_run(tmp_path, capsys):
    """--device is each run's ExperimentConfig.device; a device torch cannot give stops the script
    with a message naming the device before any folder is made."""
    ab = _al_benchmark()
    cfg, _ = ab._label_config("a", "margin", 0, 1, "cpu")
    assert cfg.device == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        ab.main(["--settings", "a", "--labels", "margin", "--seeds", "0", "--root", str(tmp_path), "--device", "tpu"])
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            ab.main(["--settings", "a", "--labels", "margin", "--seeds", "0", "--root", str(tmp_path),
                     "--device", "cuda"])
    assert not (tmp_path / "a").exists()


def test_al_benchmark_logs_a_failed_run_and_goes_on(monkeypatch, capsys):
    """One run that raises is reported by name and the other runs still happen (before, the first
    failure ended the log and hid the others' results)."""
    ab = _al_benchmark()
    ran = []

    def fake(root, setting, label, seed, threads, device="cpu"):
        ran.append(seed)
        if seed == 1:
            raise RuntimeError("boom")
        return f"{setting}/{label}/seed{seed}: 1 s"

    monkeypatch.setattr(ab, "run_one", fake)
    jobs = [("r", "c", "autoal", sd, 1, "cpu") for sd in range(3)]
    assert ab._run_jobs(jobs, 1) == ["c/autoal/seed1"]
    assert ran == [0, 1, 2]
    out = capsys.readouterr().out
    assert "c/autoal/seed1: FAILED (RuntimeError: boom)" in out and "c/autoal/seed2: 1 s" in out


def test_al_benchmark_merges_an_earlier_table(tmp_path):
    """--baselines: the labels of an earlier table that have no folder here join this one (marked
    imported), with ``--baselines-tag`` also those that have; the paired differences are over both."""
    ab = _al_benchmark()

    def lab(vals):
        return {"aubc": {str(i): v for i, v in enumerate(vals)}, "mean": float(np.mean(vals)), "std": 0.0}

    now = {"a": {"description": "d", "labels": {"mine": lab([0.5, 0.6, 0.7])}}}
    base = {"a": {"labels": {"mine": lab([0.4, 0.6, 0.9]), "margin": lab([0.45, 0.65, 0.6])},
                  "batch_looks": {"mine": {"rounds": 3}}},
            "z": {"labels": {"margin": lab([0.1, 0.2])}}}
    out = ab.merge_baselines(json.loads(json.dumps(now)), base, "mine")
    assert set(out) == {"a"} and set(out["a"]["labels"]) == {"mine", "margin"}
    assert out["a"]["labels"]["margin"]["imported"] and not out["a"]["labels"]["mine"].get("imported")
    d = out["a"]["paired_vs_mine"]["margin"]
    diffs = np.array([0.05, -0.05, 0.1])
    assert d["n"] == 3 and d["wins"] == 2 and abs(d["mean"] - diffs.mean()) < 1e-12
    assert abs(d["se"] - diffs.std(ddof=1) / np.sqrt(3)) < 1e-12
    assert out["a"]["labels"]["mine"]["aubc"] == now["a"]["labels"]["mine"]["aubc"]  # ours wins a clash
    tagged = ab.merge_baselines(json.loads(json.dumps(now)), base, "mine", tag="old")
    assert set(tagged["a"]["labels"]) == {"mine", "margin", "mine@old"}
    assert tagged["a"]["batch_looks"] == {"mine@old": {"rounds": 3}}
    assert abs(tagged["a"]["paired_vs_mine"]["mine@old"]["mean"] - np.mean([0.1, 0.0, -0.2])) < 1e-12
    tagged["a"].pop("batch_looks")
    text = ab.markdown(tagged, "mine")
    assert "| mine@old † |" in text and "| margin † |" in text and "from an earlier table" in text


def test_autoal_seed_redraws_only_autoals_randomness(tmp_path):
    """ExperimentConfig.autoal_seed: a repeat of AutoAL on the same paired seed. The initial set and
    the task model stay the seed's (round 0's accuracy is the same), AutoAL's search is drawn
    afresh, the same salt gives the same run, and a bad salt is refused by name."""
    if not _has_autoal():
        pytest.skip("AutoAL not importable")

    def run(salt, sub):
        cfg = ExperimentConfig(strategies=("autoal",), autoal_seed=salt,
                               autoal={"pretrain_steps": 20, "search_steps": 10}, **dict(TINY, seeds=(0,)))
        res = run_experiment(cfg, out=str(tmp_path / sub), progress=False, verbose=False, plot=False)
        return res["strategies"]["autoal"]["runs"][0]["rounds"]

    r0, r1, r1b = run(0, "s0"), run(1, "s1"), run(1, "s1b")
    assert r0[0]["test_acc"] == r1[0]["test_acc"]
    assert r0[0]["info"]["margins"]["fitnet_pool"] != r1[0]["info"]["margins"]["fitnet_pool"]  # another FitNet
    assert [r.get("info") for r in r1] == [r.get("info") for r in r1b] and [r["test_acc"] for r in r1] == [r["test_acc"] for r in r1b]
    with pytest.raises(ValueError, match="autoal_seed"):
        ExperimentConfig(autoal_seed=-1).validate()


def test_al_benchmark_averages_repeats():
    """--average NAME=L1+L2: per seed that both have, the mean AUBC, paired like any label."""
    ab = _al_benchmark()
    summ = {"a": {"labels": {"r0": {"aubc": {"0": 0.5, "1": 0.7, "2": 0.9}},
                             "r1": {"aubc": {"0": 0.7, "1": 0.5}},
                             "margin": {"aubc": {"0": 0.55, "1": 0.65, "2": 0.1}}}},
            "b": {"labels": {"r0": {"aubc": {"0": 0.5}}, "margin": {"aubc": {"0": 0.4}}}}}
    out = ab.add_averages(summ, ab._parse_averages(["mean2=r0+r1"]), "mean2")
    assert out["a"]["labels"]["mean2"]["aubc"] == {"0": 0.6, "1": 0.6} and "mean2" not in out["b"]["labels"]
    d = out["a"]["paired_vs_mean2"]["margin"]
    assert d["n"] == 2 and d["wins"] == 1 and abs(d["mean"] - 0.0) < 1e-12
    for bad in ("mean2", "mean2=r0", "=r0+r1"):
        with pytest.raises(SystemExit, match="--average"):
            ab._parse_averages([bad])


def test_al_benchmark_table_reads_only_the_seeds_asked(tmp_path):
    """--table --seeds: the table's means and pairs are over those seeds only (a root holding seeds
    0-9 read as 0-4 must not mix the two halves); without --seeds every finished seed is read."""
    ab = _al_benchmark()
    for lab, base in (("margin", 0.5), ("autoal", 0.6)):
        for sd in range(4):
            d = tmp_path / "a" / lab / f"seed{sd}"
            d.mkdir(parents=True)
            run = {"seed": sd, "aubc": base + 0.01 * sd + (0.1 if sd >= 2 else 0.0), "rounds": []}
            (d / "results.json").write_text(json.dumps({"complete": True, "strategies": {lab: {"runs": [run]}}}))
    (tmp_path / "a" / "margin" / "seed9").mkdir()  # an unfinished folder is skipped
    assert set(ab.collect(str(tmp_path), "a")["margin"]) == {0, 1, 2, 3}
    assert set(ab.collect(str(tmp_path), "a", {0, 1})["margin"]) == {0, 1}
    out = ab.summary(str(tmp_path), ["a"], "autoal", seeds={0, 1})
    assert out["a"]["labels"]["margin"]["mean"] == pytest.approx(0.505)
    assert out["a"]["paired_vs_autoal"]["margin"]["n"] == 2
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    ab.main(["--settings", "a", "--table", "--seeds", "2-3", "--ref", "autoal", "--root", str(tmp_path),
             "--json", str(js), "--md", str(md)])
    assert json.loads(js.read_text())["a"]["labels"]["autoal"]["mean"] == pytest.approx(0.725)
    # without --json / --md the table goes beside the run folders, not over the committed results
    ab.main(["--settings", "a", "--table", "--ref", "autoal", "--root", str(tmp_path)])
    assert json.loads((tmp_path / "al_bench.json").read_text())["a"]["labels"]["autoal"]["mean"] == pytest.approx(0.665)
    assert (tmp_path / "al_bench.md").read_text().startswith("**a.")


def test_pool_realisations_pairs_within_each_and_averages_per_seed(tmp_path, capsys):
    """Two realisations of seeds 0-2: each difference is taken within its realisation, the per-seed
    means are averaged over seeds; renames pool differently named labels; a missing label skips
    that realisation."""
    pr = _al_benchmark("pool_realisations")

    def lab(vals):
        return {"aubc": {str(i): v for i, v in enumerate(vals)}}

    r1 = {"a": {"labels": {"autoal_explore": lab([0.60, 0.70, 0.80]), "margin": lab([0.55, 0.72, 0.70])}}}
    r2 = {"a": {"labels": {"autoal_mean2": lab([0.50, 0.60, 0.90]), "margin": lab([0.52, 0.58, 0.80]),
                           "badge": lab([0.4, 0.5, 0.6])}}}
    p1, p2 = tmp_path / "r1.json", tmp_path / "r2.json"
    p1.write_text(json.dumps(r1))
    p2.write_text(json.dumps(r2))
    pr.main(["--run", f"{p1}:autoal=autoal_explore", "--run", f"{p2}:autoal=autoal_mean2", "--labels", "margin,badge",
             "--settings", "a", "--seeds", "0-2", "--json", str(tmp_path / "out.json")])
    out = json.loads((tmp_path / "out.json").read_text())["a"]
    per_seed = np.array([(0.05 - 0.02) / 2, (-0.02 + 0.02) / 2, (0.10 + 0.10) / 2])
    assert out["margin"]["realisations"] == 2 and out["margin"]["n_seeds"] == 3
    assert abs(out["margin"]["mean"] - per_seed.mean()) < 1e-12
    assert abs(out["margin"]["se"] - per_seed.std(ddof=1) / np.sqrt(3)) < 1e-12
    assert out["margin"]["wins"] == 2  # seed 1's mean is 0: not a win
    assert out["badge"]["realisations"] == 1 and abs(out["badge"]["mean"] - (0.1 + 0.1 + 0.3) / 3) < 1e-12
    assert "| a | margin |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="NAME=LABEL"):
        pr.main(["--run", f"{p1}:autoal", "--labels", "margin"])



def test_share_value_round_robin_skips_chosen_and_keeps_quotas():
    sv = _al_benchmark("share_value")
    lists = {"x": [5, 1, 2, 3, 9], "y": [5, 7, 1, 8, 6], "z": [0, 4]}
    # x takes 1 (5 is in the base), y takes 7, z takes 0; then x 2, y 1 is taken -> 8
    assert sv._share([5], lists, 5, ["x", "y", "z"]) == [5, 1, 7, 0, 2, 8]
    # one candidate alone: its best-ranked not chosen, in its order
    assert sv._share([5, 2], lists, 3, ["x"]) == [5, 2, 1, 3, 9]
    # a list that runs out stops short rather than repeating a sample
    out = sv._share([0, 4], lists, 2, ["z"])
    assert out == [0, 4] and len(set(out)) == len(out)
