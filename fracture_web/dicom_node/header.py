"""What the result objects take from the source radiographs: patient and study, a reference to
each image, and new UIDs that stay the same when the same image (or study) is sent again (pydicom only)."""
from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import generate_uid

from ..inference import Prediction

MANUFACTURER = "fracture-web"
MODEL_NAME = "fracture-detection assistant"
NOT_FOR_DIAGNOSIS = "NOT FOR DIAGNOSTIC USE"
#: Private coding scheme (PS3.16: designators starting with 99) for the concepts DICOM has no code for.
SCHEME = "99FRACTUREWEB"
#: Copied from the source when present; the type 2 ones (in ``REQUIRED_EMPTY``) are kept, empty, when not.
PATIENT_STUDY = ("SpecificCharacterSet", "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate",
                 "PatientSex", "PatientAge", "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID",
                 "AccessionNumber", "ReferringPhysicianName", "StudyDescription")
REQUIRED_EMPTY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                  "StudyID", "AccessionNumber", "ReferringPhysicianName")


def result_uid(source: Dataset, p: Prediction, kind: str) -> str:
    """A UID that is new (not the source's) but the same each time this image gets this result (from
    this model at this operating point)."""
    return generate_uid(entropy_srcs=[str(source.SOPInstanceUID), p.model_version, p.operating_point, kind])


def study_result_uid(source: Dataset, p: Prediction, kind: str) -> str:
    """A UID for a result about the source's whole study: the same each time this study gets this
    result from this model at this operating point, whichever of its images the result covers; a
    different one for another patient given the same Study Instance UID (:func:`patient_key`)."""
    return generate_uid(entropy_srcs=[str(source.StudyInstanceUID), patient_key(source), p.model_version,
                                      p.operating_point, "study", kind])


def patient_key(source: Dataset) -> str:
    """Whose the image is, to keep patients apart where a modality gave two the same Study Instance
    UID (a badly set UID root): the Patient ID with its issuer, or the Patient's Name where there is
    no ID; empty when neither is known."""
    if patient_id := str(source.get("PatientID") or "").strip():
        return f"id:{patient_id}\0{str(source.get('IssuerOfPatientID') or '').strip()}"
    return f"name:{str(source.get('PatientName') or '').strip()}"


def patient_and_study(source: Dataset) -> Dataset:
    """The source's patient and study attributes (``PATIENT_STUDY``); nothing invented."""
    ds = Dataset()
    for keyword in PATIENT_STUDY:
        if keyword in source:
            ds[keyword] = source[keyword]
        elif keyword in REQUIRED_EMPTY:
            setattr(ds, keyword, "")
    return ds


def identity(source: Dataset) -> Dataset:
    """The source's patient and study and its own series and instance UIDs: all a report needs of it."""
    ds = patient_and_study(source)
    ds.SOPClassUID, ds.SOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    ds.SeriesInstanceUID = source.SeriesInstanceUID
    return ds


def reference(source: Dataset) -> Dataset:
    """A Referenced SOP Class / Instance UID item citing the source image."""
    item = Dataset()
    item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return item
