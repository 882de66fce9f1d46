"""bench/report.py: ratios, the CSV and the markdown table from known rows."""

import csv

import pytest

from bench import report


def row(config, kind, concurrency, rps):
    return {
        "config": config,
        "kind": kind,
        "concurrency": concurrency,
        "req_per_s": rps,
        "p50_ms": 1.0,
        "p90_ms": 2.0,
        "p99_ms": 3.0,
        "max_ms": 4.0,
        "errors": 0,
        "load_avg_1m": 0.5,
    }


@pytest.fixture
def rows():
    return report.add_ratios(
        [
            row("mms-b8-d1", "mms", 1, 500.0),
            row("mms-b8-d1", "mms", 16, 6000.0),
            row("flask-sync", "flask", 1, 1000.0),
            row("flask-sync", "flask", 16, 1500.0),
            row("flask-gthread", "flask", 1, 800.0),
            row("flask-gthread", "flask", 16, 3000.0),
            row("nginx", "nginx", 1, 50000.0),
            row("nginx", "nginx", 16, 120000.0),
        ]
    )


def test_ratios_are_against_the_best_flask_and_nginx_at_the_same_concurrency(rows):
    mms = {r["concurrency"]: r for r in rows if r["config"] == "mms-b8-d1"}
    assert mms[1]["vs_flask"] == pytest.approx(0.5)  # flask-sync is best at c=1
    assert mms[16]["vs_flask"] == pytest.approx(2.0)  # flask-gthread is best at c=16
    assert mms[16]["vs_nginx"] == pytest.approx(0.05)


def test_ratios_are_empty_without_a_reference():
    only = report.add_ratios([row("mms-b1-w1", "mms", 1, 900.0)])
    assert only[0]["vs_flask"] is None and only[0]["vs_nginx"] is None


def test_peaks_pick_each_configuration_best_point(rows):
    assert {r["config"]: r["concurrency"] for r in report.peaks(rows)} == {
        "mms-b8-d1": 16,
        "flask-sync": 16,
        "flask-gthread": 16,
        "nginx": 16,
    }


def test_csv_and_markdown(rows, tmp_path):
    report.write_csv(rows, tmp_path / "results.csv")
    with open(tmp_path / "results.csv", newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["config"] for r in written] == [r["config"] for r in rows]
    assert written[1]["req_per_s"] == "6000" and written[1]["vs_flask"] == "2"
    report.write_markdown(
        tmp_path / "results.md",
        "title",
        ["a note"],
        [("CPU", "test")],
        ["setting"],
        rows,
        "| handler |",
        [("broken", "why")],
        "plot.png",
    )
    text = (tmp_path / "results.md").read_text()
    assert "| mms-b8-d1 | 16 | 6,000 | 1.00 | 2.00 | 3.00 | 0 | 2.00× | 5% |" in text
    assert "> a note" in text and "**broken**: why" in text and "![" in text


def test_plot_writes_a_png(rows, tmp_path):
    report.plot(rows, tmp_path / "plot.png", "title")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
