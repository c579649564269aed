"""A source image's identity as the study report's evidence, tidied so that highdicom takes it.

highdicom checks the patient and study attributes it copies into a report and refuses the whole
report over one it does not like: a Specific Character Set with an empty first value (the standard
way to write ISO 2022 with the default repertoire) or a name it does not know, a date written
``1970-01-01``, a time written ``10:15``, a sex written ``female``. Such headers are common, and the
report matters more than the untidy value, so here a date or time in a common other form is
rewritten in DICOM's, a sex spelt out becomes its code, the character set becomes UTF-8 (the values
are decoded already, and UTF-8 writes any of them), and what still does not fit is left empty
(these are type 2: present, may be empty). The Secondary Captures keep the source's values as sent.
"""
from __future__ import annotations

import re

from highdicom.enum import SpecificCharacterSetValues
from pydicom import Dataset

from .header import identity

UTF8 = "ISO_IR 192"
DATE = re.compile(r"\d{8}")
TIME = re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?")
SEXES = {"M": "M", "F": "F", "O": "O", "MALE": "M", "FEMALE": "F", "OTHER": "O"}


def report_evidence(source: Dataset) -> Dataset:
    """The source's identity (:func:`~fracture_web.dicom_node.header.identity`) with the values
    highdicom would refuse mended or emptied."""
    ds = identity(source)
    if "SpecificCharacterSet" in ds and not known_character_sets(ds.SpecificCharacterSet):
        ds.SpecificCharacterSet = UTF8
    for keyword in ("PatientBirthDate", "StudyDate"):
        if keyword in ds:
            setattr(ds, keyword, dicom_date(ds[keyword].value))
    if "StudyTime" in ds:
        ds.StudyTime = dicom_time(ds["StudyTime"].value)
    if "PatientSex" in ds:
        ds.PatientSex = SEXES.get(str(ds.PatientSex or "").strip().upper(), "")
    return ds


def known_character_sets(value: object) -> bool:
    """Whether every value of a Specific Character Set is one highdicom knows (an empty one is not)."""
    values = [value] if isinstance(value, str) else list(value)
    try:
        return bool(values) and all(SpecificCharacterSetValues(str(v)) for v in values)
    except ValueError:
        return False


def dicom_date(value: object) -> str:
    """A DA value (``YYYYMMDD``) from one in DICOM's form or ISO 8601's (``YYYY-MM-DD``, ``YYYY.MM.DD``); else empty."""
    text = re.sub(r"^(\d{4})[-.](\d{2})[-.](\d{2})$", r"\1\2\3", str(value or "").strip())
    return text if DATE.fullmatch(text) else ""


def dicom_time(value: object) -> str:
    """A TM value (``HHMMSS.FFFFFF``, parts optional) from one in DICOM's form or with colons; else empty."""
    text = str(value or "").strip()
    if re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?", text):
        text = text.replace(":", "")
    return text if TIME.fullmatch(text) else ""
