"""What the site page shows, worked out from the stored analyses and the served model's metadata:
the counts, the rates per operating point and per body part, the reliability bins, the fractured
share over time, what a re-fit would change, and the plain sentences that say what it all means.
No Flask: the page (``web.site``) renders it, a test recomputes it."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..evaluation.scoring import EvaluationError
from ..evaluation.site import MIN_PER_CLASS, SiteFit, check_size, fit_site
from . import statistics
from .statistics import Rates, ReliabilityBin, ShareWindow
from .store import StoredAnalysis


@dataclass(frozen=True)
class ServedModel:
    """What the report needs of the served model: its version, calibration, operating points and the
    validation figures ``metadata.json`` holds for each (the model card's)."""

    version: str
    calibration: str
    thresholds: Mapping[str, float]
    default_point: str
    card: Mapping[str, Mapping]


@dataclass(frozen=True)
class SiteReport:
    """Every figure of the site page."""

    analysed: int
    read: int
    unsure: int
    fractured_reads: int
    not_fractured_reads: int
    other_versions: int  # definite reads of another model version or calibration, left out of the rates
    by_point: dict[str, Rates]
    by_body_part: dict[str, dict[str, Rates]]
    reliability: list[ReliabilityBin]
    share: list[ShareWindow]
    refit: SiteFit | None
    sentences: list[str] = field(default_factory=list)


def site_report(rows: Sequence[StoredAnalysis], model: ServedModel, window: int) -> SiteReport:
    """The site page's figures for ``rows`` (every stored analysis, oldest first)."""
    reads = statistics.sample(rows, model.version, model.calibration)
    labelled = sum(row.read in statistics.LABEL_OF for row in rows)
    by_point = statistics.rates_by_point(reads.labels, reads.probs, model.thresholds)
    counts = model.card.get(model.default_point, {})
    # The drift chart's probabilities must be the served model's: another version's or calibration's
    # mean something else (an upgrade or a re-fit would read as drift).
    served = [row for row in rows if row.model_version == model.version and row.calibration == model.calibration]
    share = (statistics.share_over_time(served, model.thresholds[model.default_point], counts, window)
             if all(key in counts for key in ("tp", "fp", "tn", "fn")) else [])
    report = SiteReport(
        analysed=len(rows), read=sum(row.read is not None for row in rows),
        unsure=sum(row.read == "unsure" for row in rows), fractured_reads=reads.fractured,
        not_fractured_reads=reads.not_fractured, other_versions=labelled - len(reads.labels), by_point=by_point,
        by_body_part=statistics.rates_by_body_part(reads, model.thresholds),
        reliability=statistics.reliability(reads), share=share, refit=_refit(reads))
    report.sentences.extend(sentences(report, model))
    return report


def _refit(reads: statistics.Sample) -> SiteFit | None:
    """What a re-fit from these reads would give (cross-validated), once there are enough of each class."""
    if not statistics.enough_to_refit(reads):
        return None
    try:
        check_size(reads.labels)
        return fit_site(reads.labels, reads.probs, {"body_part": list(reads.body_parts)})
    except EvaluationError:
        return None


def sentences(report: SiteReport, model: ServedModel) -> list[str]:
    """What the figures mean, in plain words: too few reads, rates below the model card's, drift, re-fit."""
    drift = ["The share of fractured verdicts among the latest images is outside the range the validation "
             "split expects: a new scanner, a changed export or a different case mix?"] \
        if report.share and report.share[-1].outside else []
    short = MIN_PER_CLASS - min(report.fractured_reads, report.not_fractured_reads)
    if short > 0:  # the drift needs no reads
        return [f"Too few reads yet: {report.fractured_reads} fractured and {report.not_fractured_reads} not "
                f"fractured. The rates mean little, and no re-fit is possible, before there are {MIN_PER_CLASS} of each.",
                *drift]
    said = []
    rates, card = report.by_point[model.default_point], model.card.get(model.default_point, {})
    for name, ci in (("sensitivity", rates.sensitivity_ci95), ("specificity", rates.specificity_ci95)):
        if name in card and ci[1] < card[name]:
            said.append(f"The {name} on this site's reads ({getattr(rates, name):.2f}, 95% CI {ci[0]:.2f}-{ci[1]:.2f}) "
                        f"is below the model card's ({card[name]:.2f}) at the {_words(model.default_point)} "
                        "operating point.")
    if not said:
        said.append(f"At the {_words(model.default_point)} operating point, this site's reads agree with the "
                    "model card's sensitivity and specificity within their 95% intervals.")
    said.extend(drift)
    if report.refit is not None:
        said.append("There are enough reads to re-fit the operating points on this site's own images; the table "
                    "below shows what the re-fit would change.")
    else:
        fractured, not_fractured = statistics.needed_to_refit()
        said.append(f"A re-fit of the operating points needs {fractured} fractured and {not_fractured} not fractured "
                    f"reads (there are {report.fractured_reads} and {report.not_fractured_reads}).")
    return said


def _words(name: str) -> str:
    return name.replace("_", " ")
