"""The robustness table: the validation images re-rendered as other sites would render them.

Each shift of :data:`fracture_web.shifts.SHIFTS` is applied to every decoded image before the
app's own preprocessing and model; the table gives the AUC and the sensitivity and specificity
at the balanced operating point under each, and their change from the unshifted images. A
model that travels loses little under shifts a scanner could produce (the target: AUC at most
0.02 lower and specificity at most 0.10 lower). Rotated and mirrored renderings
(:data:`fracture_web.orientation.ORIENTATIONS`) get rows of the same shape under their own key,
beside the scanner shifts: the target is for what a scanner does to the pixels. Phone photos of
the film on a light box or of a monitor (:func:`fracture_web.photo_render.render_photo`) get a
"photographed" section: each photo scored as an upload is (straightened where the app finds the
film), and as it would be read without the straightening, against a target of their own.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..datasets import Records
from ..imaging import decode_image
from ..photo import PHOTO_WARNING, WARNINGS as PHOTO_WARNINGS
from ..photo_render import render_photo
from ..pixels import normalise, to_uint8
from ..shifts import SHIFTS, Shift
from .diagnostic_accuracy import confusion_rates, roc_auc
from .scoring import Scorer, score_records

#: The operating point the table reports.
POINT = "balanced"
#: The target for shifts a scanner could produce.
MAX_AUC_DROP, MAX_SPECIFICITY_DROP = 0.02, 0.10
#: The target for phone photos, straightened: AUC at most this much lower than the files'.
MAX_PHOTO_AUC_DROP = 0.03


def robustness_table(records: Records, model: Scorer, shifts: tuple[Shift, ...] = SHIFTS,
                     batch_size: int = 16, seed: int = 0, probs: np.ndarray | None = None,
                     orientations: tuple[Shift, ...] = (), photos: tuple[str, ...] = ()) -> dict:
    """``{"reference": {...}, "shifts": {name: {...}}}``: AUC, sensitivity and specificity at the
    balanced point for the images as they are and under each shift, with the drops and whether
    the target holds. Random shifts (noise, crops, text) draw from a generator seeded per image.
    ``probs``: the images' scores as they are, when already known (``records`` then readable ones).
    ``orientations`` (e.g. :data:`fracture_web.orientation.ORIENTATIONS`): rows of the same shape
    under ``"orientation"``, apart from the scanner shifts. ``photos`` (e.g.
    :data:`fracture_web.photo_render.KINDS`): under ``"photographed"``, the images as phone photos
    of each kind, read as uploads are and as they were before straightening (see
    :func:`photographed_rows`)."""
    threshold = model.thresholds[POINT]
    if probs is None:
        records, probs, _unreadable, _warnings = score_records(records, model, batch_size)
    reference = _row(records.labels, probs, threshold)
    table = {"point": POINT, "threshold": threshold, "n": len(records), "reference": reference,
             "shifts": {shift.name: _shifted_row(records, model, shift, reference, batch_size, seed)
                        for shift in shifts}}
    if orientations:
        table["orientation"] = {shift.name: _shifted_row(records, model, shift, reference, batch_size, seed)
                                for shift in orientations}
    if photos:
        table["photographed"] = photographed_rows(records, model, reference, photos, batch_size, seed)
    return table


def photographed_rows(records: Records, model: Scorer, reference: dict, kinds: tuple[str, ...],
                      batch_size: int = 16, seed: int = 0) -> dict:
    """For each kind of photo, two rows: ``{kind}`` the photos uploaded as JPEG through the app's
    decoding (recognised and straightened), with the share of answers that say they are photos
    (``as_photo``) and of films found (``straightened``), and the target
    (:data:`MAX_PHOTO_AUC_DROP`); ``{kind}_as_is`` the same photos read as plain images were
    before (the whole photo in grey), for comparison."""
    rows = {}
    for kind in kinds:
        readings: list[tuple[str, ...]] = []
        uploaded = Shift(kind, f"a phone photo of the {kind}, read as uploaded",
                         lambda x, r, kind=kind: _upload_photo(x, kind, r, readings), scanner=False)
        as_is = Shift(f"{kind}_as_is", f"a phone photo of the {kind}, not straightened",
                      lambda x, r, kind=kind: normalise(cv2.cvtColor(_photo(x, kind, r), cv2.COLOR_BGR2GRAY)),
                      scanner=False)
        row = _shifted_row(records, model, uploaded, reference, batch_size, seed)
        row.update(meets_target=bool(row["auc_drop"] <= MAX_PHOTO_AUC_DROP),
                   as_photo=float(np.mean([bool(set(w) & set(PHOTO_WARNINGS)) for w in readings])),
                   straightened=float(np.mean([PHOTO_WARNING in w for w in readings])))
        rows[kind] = row
        rows[as_is.name] = _shifted_row(records, model, as_is, reference, batch_size, seed)
    return rows


def _photo(pixels: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    return render_photo(to_uint8(pixels), kind, rng).image


def _upload_photo(pixels: np.ndarray, kind: str, rng: np.random.Generator, readings: list) -> np.ndarray:
    """The photo as the app reads it: sent as a JPEG, decoded (and straightened) as uploads are."""
    ok, data = cv2.imencode(".jpg", _photo(pixels, kind, rng), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise ValueError("JPEG encoding failed")
    decoded = decode_image(data.tobytes())
    readings.append(decoded.warnings)
    return decoded.pixels


def _shifted_row(records: Records, model: Scorer, shift: Shift, reference: dict, batch_size: int,
                 seed: int) -> dict:
    """The table's row for the images re-rendered by ``shift``, with its drops from ``reference``."""
    def transform(pixels: np.ndarray, index: int) -> np.ndarray:
        return shift.apply(pixels, np.random.default_rng([seed, index]))
    shifted, shifted_probs, _, _ = score_records(records, model, batch_size, transform)
    row = _row(shifted.labels, shifted_probs, model.thresholds[POINT])
    row.update(description=shift.description, scanner=shift.scanner,
               auc_drop=reference["auc"] - row["auc"],
               specificity_drop=reference["specificity"] - row["specificity"])
    row["meets_target"] = bool(row["auc_drop"] <= MAX_AUC_DROP and row["specificity_drop"] <= MAX_SPECIFICITY_DROP)
    return row


def _row(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    rates = confusion_rates(labels, probs, threshold)
    return {"auc": roc_auc(labels, probs), "sensitivity": rates["sensitivity"], "specificity": rates["specificity"]}


def format_robustness(table: dict) -> str:
    """The table as text, one row per shift, then the orientation rows (reported, no target)."""
    ref = table["reference"]
    lines = [f"Robustness at the {table['point']} point (threshold {table['threshold']:.3f}), {table['n']} images",
             f"{'shift':<16} {'AUC':>6} {'dAUC':>7} {'sens':>6} {'spec':>6} {'dspec':>7}  target",
             f"{'(as they are)':<16} {ref['auc']:>6.3f} {'':>7} {ref['sensitivity']:>6.3f} {ref['specificity']:>6.3f}"]
    for name, row in table["shifts"].items():
        verdict = ("met" if row["meets_target"] else "MISSED") if row["scanner"] else "n/a (an error, not a scanner)"
        lines.append(_format_row(name, row, verdict))
    if table.get("orientation"):
        lines.append("orientation (as a PACS may hold the image; reported beside the shifts, no target)")
        lines += [_format_row(name, row, "reported") for name, row in table["orientation"].items()]
    if table.get("photographed"):
        lines.append(f"photographed (phone photos of the film or a monitor, as uploaded; target: AUC at most "
                     f"{MAX_PHOTO_AUC_DROP} lower; *_as_is: not straightened, for comparison)")
        lines += [_format_row(name, row, _photo_verdict(row)) for name, row in table["photographed"].items()]
    return "\n".join(lines)


def _photo_verdict(row: dict) -> str:
    if "as_photo" not in row:
        return "reported"
    verdict = "met" if row["meets_target"] else "MISSED"
    return f"{verdict}; said photo {row['as_photo']:.0%}, straightened {row['straightened']:.0%}"


def _format_row(name: str, row: dict, verdict: str) -> str:
    return (f"{name:<16} {row['auc']:>6.3f} {-row['auc_drop']:>+7.3f} {row['sensitivity']:>6.3f} "
            f"{row['specificity']:>6.3f} {-row['specificity_drop']:>+7.3f}  {verdict}")
