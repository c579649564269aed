"""The site's story: after a day of reads, the site page shows how the model does on this site's own
patients (counts, sensitivity, specificity, PPV and NPV with Wilson intervals per operating point and
body part, a reliability plot, the fractured share beside its expected range, what a re-fit would
change) and every figure is what one computes by hand from the same reads; the CSV holds every read."""
from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest

from fracture_web.evaluation.diagnostic_accuracy import wilson_interval
from fracture_web.reads.report import ServedModel, site_report
from fracture_web.reads.statistics import refit_sample
from fracture_web.reads.store import StoredAnalysis
from fracture_web.web.reads import KEY
from site_reads import reading_day

IMAGES = 60


def percent(value: float) -> str:
    return "–" if value != value else f"{value * 100:.0f}%"


def interval(successes: int, total: int) -> str:
    low, high = wilson_interval(successes, total)
    return "" if total == 0 else f"({percent(low)}–{percent(high)})"


def reader_says(number: int, crack: bool) -> str:
    """The readers' answers: what the image shows, except "not sure" for every tenth."""
    if number % 10 == 9:
        return "unsure"
    return "fractured" if crack else "not_fractured"


def cells(page: str, row_selector: str) -> list[str]:
    """The text of each cell of the table row whose opening tag carries ``row_selector``."""
    row = re.search(rf"<tr {re.escape(row_selector)}>(.*?)</tr>", page, re.S).group(1)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", cell)).split())
            for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, re.S)]


def expected_cells(labels: np.ndarray, probs: np.ndarray, threshold: float) -> list[str]:
    """The rate cells computed by hand: each rate with its Wilson interval, then the four counts."""
    called = probs >= threshold
    tp, fp = int(np.sum(called & (labels == 1))), int(np.sum(called & (labels == 0)))
    tn, fn = int(np.sum(~called & (labels == 0))), int(np.sum(~called & (labels == 1)))

    def rate(hit: int, total: int) -> str:
        return " ".join(filter(None, (percent(hit / total if total else float("nan")), interval(hit, total))))
    return [rate(tp, tp + fn), rate(tn, tn + fp), rate(tp, tp + fp), rate(tn, tn + fn), f"{tp} / {fp} / {tn} / {fn}"]


@pytest.fixture(scope="module")
def day_of_reads(tmp_path_factory):
    """60 radiographs through the API and a read for each; the app and what was sent (the tests only look)."""
    # Four of every seven show a fracture: 32 fractured and 22 not fractured reads besides the unsure ones,
    # just enough for a re-fit (the high-sensitivity margin needs 32 fractured).
    with reading_day(tmp_path_factory.mktemp("site") / "reads.sqlite3", IMAGES, lambda number: number % 7 < 4,
                     reader_says) as day:
        yield day


def test_the_site_page_shows_what_one_computes_from_the_same_reads(day_of_reads):
    app, answers, reads = day_of_reads
    model = app.extensions["fracture_model"]
    page = app.test_client().get("/site").get_data(as_text=True)
    definite = [i for i, read in enumerate(reads) if read != "unsure"]
    labels = np.array([reads[i] == "fractured" for i in definite], np.int64)
    probs = np.array([answers[i]["probability"] for i in definite])
    parts = np.array([answers[i]["body_part"] for i in definite])

    assert re.search(rf'class="analysed">{IMAGES}<.*class="read-count">{IMAGES}<', page, re.S)
    assert f'class="unsure-reads">{reads.count("unsure")}<' in page
    assert f'class="fractured-reads">{labels.sum()}<' in page
    for name, threshold in model.thresholds.items():
        assert cells(page, f'data-point="{name}"')[2:] == expected_cells(labels, probs, threshold)
        for part in ("HAND", "unknown"):
            assert cells(page, f'data-part="{part}" data-point="{name}"')[2:] == \
                expected_cells(labels[parts == part], probs[parts == part], threshold)
    # The fractured share over the 60 images at the default operating point, beside its expected range.
    share = np.mean([a["probability"] >= model.thresholds[model.default_operating_point] for a in answers])
    assert f"images 1-{IMAGES}: {share:.0%} fractured (expected" in page
    # Enough reads to re-fit, and the page says what the re-fit would change.
    assert "There are enough reads to re-fit" in page and 'class="site-rates refit"' in page
    assert "keeps a margin for the number of reads" in page  # and says what the margin costs
    assert page.count("<circle class=\"marker\"") >= 2  # the reliability plot has its points


def test_the_csv_holds_every_analysis_with_its_read(day_of_reads):
    app, answers, reads = day_of_reads
    exported = app.test_client().get("/site/reads.csv")
    assert exported.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True))))
    assert [row["request_id"] for row in rows] == [answer["request_id"] for answer in answers]
    assert [row["read"] for row in rows] == reads
    assert [round(float(row["probability"]), 6) for row in rows] == [answer["probability"] for answer in answers]


def test_a_refit_takes_the_readers_labels_and_the_probabilities_the_served_model_gave(day_of_reads):
    app, answers, reads = day_of_reads
    model = app.extensions["fracture_model"]
    labels, probs, columns = refit_sample(app.extensions[KEY].all(), model.version, model.calibration)
    definite = [i for i, read in enumerate(reads) if read != "unsure"]
    assert labels.tolist() == [int(reads[i] == "fractured") for i in definite]
    np.testing.assert_allclose(probs, [answers[i]["probability"] for i in definite], atol=1e-6)
    assert columns["body_part"] == [answers[i]["body_part"] for i in definite]
    # Another model version's probabilities are not this model's: none of them is taken.
    assert len(refit_sample(app.extensions[KEY].all(), "another-version", model.calibration)[0]) == 0


def rows_read(probs: list[float], reads: list[str]) -> list[StoredAnalysis]:
    now = datetime.now(timezone.utc)
    return [StoredAnalysis(f"{i:032x}", now, "web", "v1", "balanced", 0.5, "development", p, p >= 0.5, (), None,
                           None, read=read) for i, (p, read) in enumerate(zip(probs, reads))]


CARD = {"balanced": {"sensitivity": 0.9, "specificity": 0.9, "tp": 45, "fp": 5, "tn": 45, "fn": 5}}
SERVED = ServedModel("v1", "development", {"balanced": 0.5}, "balanced", CARD)


def test_too_few_reads_are_said_to_be_too_few():
    report = site_report(rows_read([0.9, 0.1], ["fractured", "not_fractured"]), SERVED, window=200)
    assert report.sentences[0].startswith("Too few reads yet: 1 fractured and 1 not fractured")


def test_a_sensitivity_below_the_model_cards_is_said_in_plain_words():
    # 30 fractured images of which the model finds 15, 30 normal ones it all clears: sensitivity 0.5.
    probs = [0.9] * 15 + [0.1] * 15 + [0.1] * 30
    report = site_report(rows_read(probs, ["fractured"] * 30 + ["not_fractured"] * 30), SERVED, window=200)
    assert any(s.startswith("The sensitivity on this site's reads (0.50") and "below the model card's (0.90)" in s
               for s in report.sentences)
    assert not any("specificity" in s and "below" in s for s in report.sentences)
    # 30 fractured reads are too few for a re-fit whose high-sensitivity point keeps its margin.
    assert report.refit is None
    assert "A re-fit of the operating points needs 32 fractured and 20 not fractured reads (there are 30 and 30)." \
        in report.sentences


def test_the_drift_chart_follows_the_served_model_and_speaks_before_there_are_reads():
    # 60 unread analyses by a model version no longer served, all "fractured", then 60 by this one as
    # the validation split expects: an upgrade is not drift.
    older = [replace(row, model_version="v0") for row in rows_read([0.9] * 60, [None] * 60)]
    served = rows_read([0.9] * 30 + [0.1] * 30, [None] * 60)
    report = site_report(older + served, SERVED, window=200)
    assert [(window.first, window.last) for window in report.share] == [(1, 60)] and not report.share[-1].outside
    # This model calling every one of 60 images fractured is drift, said even with no reads yet.
    drifted = site_report(rows_read([0.9] * 60, [None] * 60), SERVED, window=200)
    assert drifted.sentences[0].startswith("Too few reads yet")
    assert any("outside the range the validation split expects" in s for s in drifted.sentences)
