"""Metrics against hand-worked examples, and a real (tiny) grouped cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from musicid.cli import app
from musicid.evaluation.evaluate import EvalOptions, evaluate, save_results
from musicid.evaluation.metrics import (
    auroc,
    classification_report,
    confusion_matrix,
    fpr_at_tpr,
    group_bootstrap,
    percentile_interval,
)

from .conftest import make_corpus, tiny_options


def test_classification_report_by_hand() -> None:
    # A: 3 true, 2 right; B: 1 true, right; C: 1 true, called A.  Predicted A 3x, B 2x (one wrong).
    y_true = ["A", "A", "A", "B", "C"]
    y_pred = ["A", "A", "B", "B", "A"]
    r = classification_report(y_true, y_pred, ["A", "B", "C"])
    assert r["confusion"] == [[2, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert r["accuracy"] == pytest.approx(3 / 5)
    assert r["balanced_accuracy"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    # F1: A p=2/3 r=2/3 -> 2/3; B p=1/2 r=1 -> 2/3; C 0
    assert r["per_label"]["A"]["f1"] == pytest.approx(2 / 3)
    assert r["per_label"]["B"]["precision"] == pytest.approx(0.5)
    assert r["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)


def test_labels_without_examples_do_not_dilute_macro_scores() -> None:
    r = classification_report(["A", "B"], ["A", "B"], ["A", "B", "Z"])
    assert r["macro_f1"] == 1.0 and r["balanced_accuracy"] == 1.0
    assert confusion_matrix(["A"], ["Z"], ["A", "Z"]).tolist() == [[0, 1], [0, 0]]


def test_auroc_and_fpr_by_hand() -> None:
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    assert auroc([2, 3], [1, 2]) == pytest.approx(3.5 / 4)  # 2>1, 2=2 (half), 3>1, 3>2
    assert auroc([1.0], [1.0]) == 0.5
    novel = np.arange(20, 40)  # 20 novel scores 20..39
    known = np.arange(0, 30)  # known 0..29: a threshold flagging 19 of 20 novel (>= 21) flags 9 known
    assert fpr_at_tpr(novel, known, 0.95) == pytest.approx(9 / 30)
    assert fpr_at_tpr([5.0], [1.0, 6.0], 0.95) == 0.5


def test_bootstrap_draws_whole_works_and_keeps_each_composers_count() -> None:
    # composer A: work w1 (3 tracks), w2 (1 track); composer B: w3 (2 tracks)
    groups = ["w1", "w1", "w2", "w3", "w1", "w3"]
    strata = ["A", "A", "A", "B", "A", "B"]
    draws = group_bootstrap(groups, strata, draws=200, seed=1)
    assert draws.shape == (200, 6)
    # a work's tracks always come back together, the same number of times
    assert (draws[:, 0] == draws[:, 1]).all() and (draws[:, 0] == draws[:, 4]).all()
    # A has 2 works, so 2 are drawn: w1 0-2 times, w2 the rest; B's only work exactly once
    assert (draws[:, 0] + draws[:, 2] == 2).all() and set(draws[:, 0].tolist()) == {0, 1, 2}
    assert (draws[:, 3] == 1).all() and (draws[:, 5] == 1).all()
    assert (group_bootstrap(groups, strata, 200, seed=1) == draws).all()  # reproducible
    assert percentile_interval(np.arange(101.0), level=0.9) == pytest.approx([5.0, 95.0])
    assert percentile_interval([1.0, float("nan"), 1.0]) == [1.0, 1.0]


def test_grouped_cross_validation_runs_end_to_end(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute", "Strings"], per_composer=6, seconds=8)
    result = evaluate(data, EvalOptions(folds=3, build=tiny_options(tmp_path)))
    s = result.summary
    assert s["track"]["n"] == 18 and s["clip"]["n"] > 18
    assert s["track"]["accuracy"] >= 0.8  # three clearly different toy styles
    # both classifiers from the same models; the run's own (auto: knn on audio) is the headline
    assert s["track"]["classifier"] == "knn" and set(s["track_by_classifier"]) == {"knn", "linear", "fused"}
    assert s["track_by_classifier"]["knn"]["accuracy"] == s["track"]["accuracy"]
    assert s["track_by_classifier"]["linear"]["n"] == 18
    assert set(s["loco_by_method"]) == {"fused", "track-knn", "clip-knn", "symbolic-knn", "spectral-knn"}
    assert s["loco"]["method"] == "fused" and s["loco"]["mean_auroc"] == s["loco_by_method"]["fused"]["mean_auroc"]
    # no work straddles folds: both movements of each toy work share a fold
    by_work: dict[str, set[int]] = {}
    for path, f in s["fold_of"].items():
        by_work.setdefault(path.rsplit("_", 1)[0].rsplit("_", 1)[0], set()).add(f)
    assert all(len(v) == 1 for v in by_work.values())
    assert set(s["loco"]["per_composer"]) == {"Highflute", "Lowpiano", "Strings"}
    # by hand: the two known composers have 3 works (of 2 movements) each; 20% of each one's works (1)
    # are known-test tracks, 20% of the rest (1 work) calibrate: 2 x 2 = 4 tracks of each
    for c, v in s["loco"]["per_composer"].items():
        assert (v["novel_tracks"], v["known_tracks"], v["calibration_tracks"]) == (6, 4, 4), c
    for lo in s["loco_by_method"].values():  # the mean is over the left-out composers
        assert lo["mean_auroc"] == pytest.approx(np.mean([v["auroc"] for v in lo["per_composer"].values()]))
    # the symbolic features do not depend on the trained model: the toy styles' notes differ in register,
    # rhythm and chord size, so every left-out style scores above every known track, in every draw of works
    symbolic = s["loco_by_method"]["symbolic-knn"]
    assert [v["auroc"] for v in symbolic["per_composer"].values()] == [1.0, 1.0, 1.0]
    assert symbolic["mean_auroc_ci"] == [1.0, 1.0] and s["intervals"]["draws"] == 1000
    assert all(v["flagged_novel"] == 1.0 for v in symbolic["per_composer"].values())
    # 95% intervals from resampled works around the headline figures
    lo, hi = s["track"]["macro_f1_ci"]
    assert lo <= s["track"]["macro_f1"] <= hi
    assert all(len(v["auroc_ci"]) == 2 for v in s["loco"]["per_composer"].values())
    paths = save_results(result, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["confusion.png", "embedding_map.png", "eval.json"]
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["meta"]["folds"] == 3


def test_eval_cli_needs_two_composers(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Organ"], per_composer=2, seconds=4)
    r = CliRunner().invoke(app, ["eval", str(data), "--out", str(tmp_path / "o")])
    assert r.exit_code == 1 and "training needs at least 2" in r.stderr


def test_published_baseline_wiring(tmp_path: Path) -> None:
    """The published method on the same folds: 44.1 kHz stereo, first 30 s, 2 x 64 x 2584, 25-d."""

    from musicid.evaluation.baseline import PUBLISHED_FRAMES, PublishedNet, anchor_files, published_input

    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=6)
    x = published_input(sorted((data / "Strings").glob("*.mid"))[0])
    assert x.shape == (2, 64, PUBLISHED_FRAMES) and PUBLISHED_FRAMES == 2584
    net = PublishedNet()
    assert sum(p.numel() for p in net.parameters()) == 13_389_373
    assert net(x[None]).shape == (1, 25) and bool((net(x[None]) >= 0).all())
    paths = [Path("b.mid"), Path("a.mid"), Path("c.mid")]
    assert anchor_files(paths, ["X", "X", "X"], [0, 1, 2]) == {"X": 0}  # second in directory order: b.mid
    result = evaluate(data, EvalOptions(folds=2, loco=False, baseline="published", baseline_epochs=1,
                                        build=tiny_options(tmp_path)))
    base = result.summary["baseline"]
    assert base["track"]["n"] == 8 and base["skipped_tracks"] == 0
    assert set(base["track"]["labels"]) == {"Lowpiano", "Strings"}
    # judged on the same resampled works as musicid, and the difference interval is paired
    vs = result.summary["vs_baseline"]["macro_f1"]
    assert vs["difference"] == pytest.approx(result.summary["track"]["macro_f1"] - base["track"]["macro_f1"])
    assert len(base["track"]["macro_f1_ci"]) == 2 and vs["ci"][0] <= vs["ci"][1]


def test_published_loss_with_each_anchor_embedded_once_is_the_same_loss() -> None:
    import torch
    from torch import nn

    from musicid.evaluation.baseline import triplet_batch_loss

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU())
    inputs = torch.randn(7, 3, 4)
    a, p, n = [2, 5, 2, 2, 5], [0, 1, 3, 0, 6], [4, 4, 1, 6, 0]
    loss_fn = nn.TripletMarginLoss(margin=1.0, p=2)
    published = loss_fn(model(inputs[a]), model(inputs[p]), model(inputs[n]))
    published.backward()
    grads = [q.grad.clone() for q in model.parameters()]
    model.zero_grad()
    ours = triplet_batch_loss(model, inputs, a, p, n, loss_fn)
    ours.backward()
    assert float(ours) == pytest.approx(float(published), rel=1e-6)
    for q, g in zip(model.parameters(), grads, strict=True):
        torch.testing.assert_close(q.grad, g)


def test_eval_cli_prints_intervals_unless_told_not_to(tmp_path: Path) -> None:
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Strings"], per_composer=4, seconds=6)
    args = ["eval", str(data), "--folds", "2", "--no-loco", "--epochs", "1", "--steps-per-epoch", "2",
            "--cache-dir", str(tmp_path / "cache")]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    assert "95% interval" in r.output and "1000 draws of whole works" in r.output
    lo, hi = json.loads((tmp_path / "a" / "eval.json").read_text())["track"]["macro_f1_ci"]
    assert f"{lo:.2f}-{hi:.2f}" in r.output
    r = CliRunner().invoke(app, [*args, "--bootstrap", "0", "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "b" / "eval.json").read_text())
    assert "intervals" not in summary and "macro_f1_ci" not in summary["track"]
    assert "draws of whole works" not in r.output


def test_too_few_works_to_leave_a_composer_out_is_one_line(tmp_path: Path) -> None:
    from musicid.errors import TrainingError

    # three works a composer: leaving one out leaves three of the other to index, calibrate and test on
    data = make_corpus(tmp_path / "data", ["Lowpiano", "Highflute"], per_composer=3, seconds=4)
    with pytest.raises(TrainingError, match="leaving Highflute out leaves too few works"):
        evaluate(data, EvalOptions(folds=2, bootstrap=0, build=tiny_options(tmp_path)))
