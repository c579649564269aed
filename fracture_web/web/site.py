"""``/site``: this site's own accuracy against its readers' reads (``reads.report``), with its plots
drawn server-side as SVG, and ``/site/reads.csv``, the stored analyses and their reads for a spreadsheet.
Behind the same token rule as the page (``access``)."""
from __future__ import annotations

import csv
import io

from flask import Blueprint, Flask, Response, current_app, render_template

from ..inference import FractureModel
from ..reads.report import ServedModel, SiteReport, site_report
from ..reads.store import StoredAnalysis, StoreUnavailableError
from ..refusals import READS_UNAVAILABLE, Refused
from . import plots, reads
from .extension import get_model

bp = Blueprint("site", __name__)

#: The CSV's columns, in order.
COLUMNS = ("request_id", "analysed_at", "source", "model_version", "operating_point", "threshold", "calibration",
           "probability", "verdict", "findings", "body_part", "view", "read", "read_at", "reader", "findings_right",
           "reads_given")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)


def served(model: FractureModel) -> ServedModel:
    """What the site report needs of the loaded model."""
    return ServedModel(model.version, model.calibration, dict(model.thresholds), model.default_operating_point,
                       model.metadata.get("operating_points", {}))


def stored_rows() -> list[StoredAnalysis]:
    """Every stored analysis, or a 503 that says the database cannot be reached."""
    try:
        return reads.get_store().all()
    except StoreUnavailableError:
        raise Refused(READS_UNAVAILABLE) from None


def current_report() -> tuple[SiteReport | None, ServedModel | None]:
    """The report for the served model (none while no model is loaded)."""
    rows, model = stored_rows(), get_model()
    if model is None:
        return None, None
    about = served(model)
    return site_report(rows, about, current_app.config["METRICS_DRIFT_WINDOW"]), about


@bp.get("/site")
def site_page():
    """The site page: counts, rates with intervals, the reliability plot, the share over time."""
    report, about = current_report()
    return render_template("site.html", model=get_model(), report=report, served=about, plots=plots)


def _cell(value: object) -> object:
    """A value a spreadsheet shows as text, never runs as a formula (a header's body part could start with '=')."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def csv_row(row: StoredAnalysis) -> list[object]:
    return [_cell(value) for value in (
        row.id, row.analysed_at.isoformat(), row.source, row.model_version, row.operating_point, row.threshold,
        row.calibration, row.probability, "fractured" if row.fractured else "not_fractured", len(row.findings),
        row.body_part, row.view, row.read, row.read_at and row.read_at.isoformat(), row.reader,
        None if row.findings_right is None else " ".join(map(str, row.findings_right)), row.reads_given)]


@bp.get("/site/reads.csv")
def reads_csv():
    """Every stored analysis with the read that counts, as CSV."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(csv_row(row) for row in stored_rows())
    return Response(out.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=reads.csv"})
