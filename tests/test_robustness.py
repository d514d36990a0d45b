"""benchmarks/robustness.py --quick: the CI-sized run of the divergence grid."""
import json

import pytest

from benchmarks import robustness


def test_quick_mode_runs_and_reports_no_divergence(tmp_path, capsys):
    runs = tmp_path / "runs.jsonl"
    try:
        rc = robustness.main(["--quick", "--runs", str(runs)])
    except Exception as e:  # noqa: BLE001 - the AlexNet weights are fetched on first use
        if "weights" in str(e).lower():
            pytest.skip(f"AlexNet weights not available: {e}")
        raise
    records = [json.loads(line) for line in runs.read_text().splitlines()]
    assert rc == 0 and len(records) == 2 * 2 * 2 + 2  # hog, dsift × 2 presets, alexnet conv1
    assert {tuple(r["case"][:3]) for r in records} >= {("hog", "hog", "cvpr15"),
                                                       ("dsift", "dsift", "ijcv16"),
                                                       ("alexnet", "conv1", "cvpr15")}
    assert all(r["status"] == "completed" and r["iterations"] == 60 for r in records)
    table = capsys.readouterr().out
    assert "| alexnet | conv1 | cvpr15 | 2 | 0 |" in table
    assert "Totals: 10 runs, 0 divergences" in table


def test_summary_counts_divergences_and_compares_with_the_old_loop():
    recs = [{"case": ["a", "l", "p", f"i{k}"], "status": s, "relative_error": e, "backoffs": b,
             "seconds": 1.0, "max_growth": None if b else 2.0, **old}
            for k, (s, e, b, old) in enumerate([
                ("completed", 0.2, 0, {}),
                ("completed", 0.3, 1, {"old_status": "completed", "old_relative_error": 0.25}),
                ("completed", 0.4, 2, {"old_status": "non-finite", "old_relative_error": 9.0}),
                ("non-finite", 5.0, 3, {"old_status": "non-finite", "old_relative_error": 9.0})])]
    (row,) = robustness.summarise(recs)
    assert (row["diverged"], row["backed_off"], row["old_diverged"]) == (1, 3, 2)
    assert row["median"] == 0.3 and row["worst"] == 0.4  # the diverged run is not a number
    assert row["compared"] == 1 and row["worst_ratio"] == pytest.approx(1.2)
    assert robustness.max_growth([4.0, 2.0, 3.0, 1.0, 50.0]) == 50.0


def test_cases_are_taken_from_a_paper_run_directory_with_the_same_result(tmp_path):
    """--from-runs: a case the paper evaluation's batch runner ran with the grid's settings
    (its explicit iters equal to the preset's default) is read back, with the same error as
    running it; a task with other options is not taken."""
    import models
    from benchmarks.paper.batch import BatchRunner
    from minigrad.app.batch import InProcess

    hog = models.get("hog")
    runner = BatchRunner(tmp_path / "runs", InProcess(), log=lambda m: None)
    runner.uses(hog, "hog")
    image = robustness.load_image("chelsea", 32)
    runner.begin_pass()
    runner(hog, image, "hog", "cvpr15", iters=800)  # = the preset's default: the same inversion
    runner(hog, image, "hog", "ijcv16", iters=100)  # not the default schedule: not taken
    runner.execute()
    cases = [("hog", "hog", "cvpr15", "chelsea"), ("hog", "hog", "ijcv16", "chelsea")]
    found = robustness.harvest(tmp_path / "runs", {"hog": hog}, cases, feature_size=32)
    assert list(found) == [cases[0]]
    fresh = robustness.one_run(hog, image, "hog", "cvpr15", None)
    assert found[cases[0]]["relative_error"] == fresh["relative_error"]
    assert found[cases[0]]["max_growth"] == fresh["max_growth"]


@pytest.mark.parametrize("shard, message", [("2", "expected K/N"), ("a/2", "expected K/N"),
                                            ("2/2", "needs 0 <= K < N")])
def test_bad_shard_is_a_one_line_error(shard, message, capsys):
    with pytest.raises(SystemExit):
        robustness.main(["--shard", shard, "--table", "unused.jsonl"])
    assert message in capsys.readouterr().err
