"""One upload, start to finish: bytes -> preprocessing -> model -> heatmap overlay.

Shared by the page, the JSON API and the command line; no Flask. The views of one study go
through ``analyse_study``: each file as on its own, then one verdict for the study.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom import Dataset

from . import overlay
from .dicom import decode_dataset, patient_fingerprint
from .imaging import decode_image, is_dicom, to_model_input
from .inference import FractureModel, Prediction
from .photo import WARNINGS as PHOTO_WARNINGS
from .pixels import BLURRED, MIN_SHARPNESS, DecodedImage, InvalidImageError
from .study import EmptyStudyError, MixedPatientsError, StudyVerdict, combine
from .timings import StageTimings

#: What the API reports of a prediction's written shape (:meth:`Prediction.as_dict`).
API_FIELDS = ("label", "probability", "threshold", "operating_point", "model_version", "calibration", "findings")
OUT_OF_SCOPE = ("This image is unlike the radiographs the model was trained on (adult hand, leg, hip or "
                "shoulder X-rays); treat the verdict with extra caution.")


@dataclass(frozen=True)
class Analysis:
    """A prediction with what a person needs to read it: images, warnings and, for DICOM,
    the header's non-identifying context (modality, body part, view position, laterality).

    ``xray`` (grey) and ``overlay`` (RGB) are uint8 display images; each is encoded only when its
    ``*_png`` (or ``overlay_jpeg``) is read, so a caller pays for the encodings it uses.
    """

    prediction: Prediction
    warnings: tuple[str, ...]
    xray: np.ndarray | None = None
    overlay: np.ndarray | None = None
    context: dict[str, str] = field(default_factory=dict)
    display_scale: float = 1.0  # display pixels per pixel of the uploaded image
    source: str = "file"  # "photo" for a phone photo of a film or a screen (read straightened)
    size: tuple[int, int] | None = None  # (height, width) of the image the findings' boxes are in

    def shown_findings(self) -> list[dict]:
        """The findings as the page draws them over ``xray``: rank (1 = highest score), level,
        score and the box in display pixels (x, y, width, height)."""
        shown = []
        for rank, finding in enumerate(self.prediction.findings, start=1):
            x0, y0, x1, y1 = (v * self.display_scale for v in finding.box)
            shown.append({"rank": rank, "level": finding.level, "score": finding.score,
                          "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
        return shown

    def as_dict(self) -> dict:
        """The result as the JSON API and the command line report it: the prediction's written shape
        (:meth:`Prediction.as_dict`, rounded; its ``API_FIELDS``: label, probability, threshold,
        operating point, model version, calibration ("development", or "site" where the operating
        points were re-fitted locally), findings (boxes in the image's pixels, highest score first)),
        warnings, for a DICOM upload ``dicom`` with the header's non-identifying context and, for a
        phone photo of a film or a screen, ``"source": "photo"`` and ``image_size``: the size of the
        image its findings are in (the straightened film, which the display images show)."""
        written = self.prediction.as_dict(rounded=True)
        facts = {key: written[key] for key in API_FIELDS} | {"warnings": list(self.warnings)}
        if self.context:
            facts["dicom"] = dict(self.context)
        if self.source != "file":
            facts["source"] = self.source
            if self.size is not None:
                facts["image_size"] = {"width": self.size[1], "height": self.size[0]}
        return facts

    @property
    def xray_png(self) -> bytes | None:
        """The plain X-ray as PNG (None without images)."""
        return None if self.xray is None else overlay.encode_png(self.xray)

    @property
    def overlay_png(self) -> bytes | None:
        """The heatmap overlay as PNG (None without images)."""
        return None if self.overlay is None else overlay.encode_png(self.overlay)

    @property
    def overlay_jpeg(self) -> bytes | None:
        """The heatmap overlay as JPEG (None without images): what the page shows, a fraction of the PNG's bytes."""
        return None if self.overlay is None else overlay.encode_jpeg(self.overlay)


def analyse(data: bytes, model: FractureModel, operating_point: str | None = None,
            images: bool = True, display_max_side: int = 640, timings: StageTimings | None = None,
            model_view: bool = False) -> Analysis:
    """Run the model on image bytes (verdict and findings); with ``images``, also render the plain
    X-ray and the heatmap overlay for display: at most ``display_max_side`` pixels a side or, with
    ``model_view``, as the model saw the image (its input without the letterbox's bars: the JSON
    API's overlay, which costs a fraction of the larger one). Each stage's time goes into
    ``timings`` when given.

    Raises ``InvalidImageError`` for bytes that are not a usable image and
    ``UnknownOperatingPointError`` for an operating point the model lacks.
    """
    timings = StageTimings() if timings is None else timings
    model.resolve(operating_point)  # refuse a bad operating point before the work
    with timings.stage("decode"):  # one decode, no larger than the model input or the display image needs
        decoded = decode_image(data, max(model.input_size, display_max_side))
    return analyse_decoded(decoded, model, operating_point, images, display_max_side, timings, model_view)


def analyse_dataset(ds: Dataset, model: FractureModel, operating_point: str | None = None,
                    images: bool = True, display_max_side: int = 640,
                    timings: StageTimings | None = None) -> Analysis:
    """What :func:`analyse` gives for a DICOM file, from its dataset already parsed (the DICOM node's)."""
    timings = StageTimings() if timings is None else timings
    model.resolve(operating_point)
    with timings.stage("decode"):
        decoded = decode_dataset(ds, max(model.input_size, display_max_side))
    return analyse_decoded(decoded, model, operating_point, images, display_max_side, timings)


def analyse_decoded(decoded: DecodedImage, model: FractureModel, operating_point: str | None = None,
                    images: bool = True, display_max_side: int = 640,
                    timings: StageTimings | None = None, model_view: bool = False) -> Analysis:
    """The model's reading of a decoded image; boxes and scale refer to the upload's own pixels
    (``decoded.size``), whatever size was decoded. Stages timed: model (the letterbox to the
    model input, the network's call and its outputs read into the verdict and findings) and, with
    ``images``, render (the display image and the overlay)."""
    timings = StageTimings() if timings is None else timings
    image = decoded.pixels
    with timings.stage("model"):
        letterboxed = to_model_input(image, model.input_size)
        outputs = model.outputs(letterboxed[np.newaxis])
    with timings.stage("findings"):
        prediction = model.read(outputs, operating_point, decoded.size)
    warnings = decoded.warnings + (() if decoded.content.sharpness >= MIN_SHARPNESS else (BLURRED,)) \
        + (() if prediction.in_scope else (OUT_OF_SCOPE,))
    source = "photo" if set(decoded.warnings) & set(PHOTO_WARNINGS) else "file"
    if not images:
        return Analysis(prediction, warnings, context=decoded.context, source=source, size=decoded.size)
    with timings.stage("render"):
        shown = (overlay.model_view(letterboxed, image.shape[:2]) if model_view
                 else overlay.display_image(image, display_max_side))
        heat = overlay.heatmap_on_image(prediction.heatmap, shown.shape[:2], model.input_size)
        blended = overlay.blend(shown, heat)
    return Analysis(prediction, warnings, shown, blended, decoded.context,
                    display_scale=shown.shape[1] / decoded.size[1], source=source, size=decoded.size)


@dataclass(frozen=True)
class StudyImage:
    """One uploaded file of a study: its analysis, or the reason it could not be analysed."""

    analysis: Analysis | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        """The file's entry in a study: what ``Analysis.as_dict`` gives for it alone, or ``{"error": ...}``."""
        return {"error": self.error} if self.analysis is None else self.analysis.as_dict()


@dataclass(frozen=True)
class StudyAnalysis:
    """The views of one examination read together: the study verdict and every file, in upload order."""

    verdict: StudyVerdict
    images: tuple[StudyImage, ...]
    warnings: tuple[str, ...]

    def as_dict(self) -> dict:
        """The study as the studies API reports it: the verdict's fields, study warnings, one entry per file."""
        return self.verdict.as_dict() | {"warnings": list(self.warnings),
                                         "images": [image.as_dict() for image in self.images]}


def analyse_study(files: Sequence[bytes], model: FractureModel, operating_point: str | None = None,
                  images: bool = True, display_max_side: int = 640,
                  timings: StageTimings | None = None, model_view: bool = False) -> StudyAnalysis:
    """Analyse each file as ``analyse`` does and combine the readable ones into one study verdict
    (``study.combine``); a file that is not a usable image gets its error while the others go on.
    Each file's stages go into ``timings`` when given.

    A file sent twice is read once (the second gets an error saying so). Raises
    ``UnknownOperatingPointError`` for an operating point the model lacks, ``MixedPatientsError``
    when DICOM files name different patients, and ``EmptyStudyError`` when no file could be analysed.
    """
    model.resolve(operating_point)  # one refusal for the request, not one per file
    check_one_patient(files)
    results, first_of = [], {}
    for number, data in enumerate(files, start=1):
        digest = hashlib.sha256(data).digest()
        if digest in first_of:  # read once: a second read would count twice in the verdict and at the site
            results.append(StudyImage(error=f"The same file as file {first_of[digest]}; each view is read once."))
            continue
        first_of[digest] = number
        try:
            results.append(StudyImage(analyse(data, model, operating_point, images, display_max_side, timings,
                                              model_view)))
        except InvalidImageError as err:
            results.append(StudyImage(error=str(err)))
    failed = [(number, image.error) for number, image in enumerate(results, start=1) if image.analysis is None]
    if len(failed) == len(results):
        reasons = " ".join(f"File {number}: {error}" for number, error in failed)
        raise EmptyStudyError(f"None of the study's files could be analysed. {reasons}")
    readable = [(number, image.analysis) for number, image in enumerate(results, start=1)
                if image.analysis is not None]
    verdict = combine([analysis.prediction for _, analysis in readable])
    warnings = (f"{len(failed)} of {len(results)} files could not be analysed.",) if failed else ()
    top, analysis = max(readable, key=lambda item: item[1].prediction.probability)  # the view combine chose
    if analysis.warnings:
        warnings += (f"The study's verdict is file {top}'s, which carries a warning of its own (below): "
                     "weigh the verdict with it.",)
    return StudyAnalysis(verdict, tuple(results), warnings)


def check_one_patient(files: Sequence[bytes]) -> None:
    """Refuse a study whose DICOM files name different patients (their IDs, else names, compared as
    digests and never kept): its verdict would be drawn from one patient's image for another's."""
    patients = {fingerprint for data in files if is_dicom(data) and (fingerprint := patient_fingerprint(data))}
    if len(patients) > 1:
        raise MixedPatientsError(f"The files name {len(patients)} different patients in their DICOM headers; a study "
                                 "is the views of one patient. Send each patient's images apart.")
