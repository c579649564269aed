"""One upload, start to finish: bytes -> preprocessing -> model -> heatmap overlay.

Shared by the page, the JSON API and the command line; no Flask.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import overlay
from .imaging import decode_image, to_model_input
from .inference import FractureModel, Prediction

OUT_OF_SCOPE = ("This image is unlike the radiographs the model was trained on (adult hand, leg, hip or "
                "shoulder X-rays); treat the verdict with extra caution.")


@dataclass(frozen=True)
class Analysis:
    """A prediction with what a person needs to read it: images, warnings and, for DICOM,
    the header's non-identifying context (modality, body part, view position, laterality)."""

    prediction: Prediction
    warnings: tuple[str, ...]
    xray_png: bytes | None = None
    overlay_png: bytes | None = None
    context: dict[str, str] = field(default_factory=dict)


def analyse(data: bytes, model: FractureModel, operating_point: str | None = None,
            images: bool = True, display_max_side: int = 640, xray: bool = True) -> Analysis:
    """Run the model on image bytes; with ``images``, also render the heatmap overlay and
    (unless ``xray`` is off, e.g. for the API, which returns only the overlay) the plain X-ray.

    Raises ``InvalidImageError`` for bytes that are not a usable image and
    ``UnknownOperatingPointError`` for an operating point the model lacks.
    """
    model.resolve(operating_point)  # refuse a bad operating point before the work
    decoded = decode_image(data)
    image = decoded.pixels
    prediction = model.predict(to_model_input(image, model.input_size), operating_point)
    warnings = decoded.warnings + (() if prediction.in_scope else (OUT_OF_SCOPE,))
    if not images:
        return Analysis(prediction, warnings, context=decoded.context)
    shown = overlay.display_image(image, display_max_side)
    heat = overlay.heatmap_on_image(prediction.heatmap, shown.shape[:2], model.input_size)
    return Analysis(prediction, warnings, overlay.encode_png(shown) if xray else None,
                    overlay.encode_png(overlay.blend(shown, heat)), decoded.context)
