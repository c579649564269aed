"""DICOM bytes -> the same [0, 1] grayscale array as any other upload (pydicom).

The grayscale pipeline in the order PS3.3 C.11 and PS3.4 N.2 give it: Modality LUT
(rescale slope/intercept or LUT) -> VOI LUT or window -> MONOCHROME1 / Presentation LUT
INVERSE -> 8 bits, as one lookup table over the stored values, applied once (to the image
shrunk to the size the caller needs, where it asks for less). Only the first frame is
decoded, and only the header elements the pipeline needs are read: patient name, ID and
birth date are never parsed, so they can reach neither the page nor a log. Compressed
transfer syntaxes are decoded by the plugins pydicom finds itself: pylibjpeg-libjpeg (JPEG
baseline, extended, lossless, JPEG-LS), pylibjpeg-openjpeg (JPEG 2000) and pydicom's own RLE
decoder (pylibjpeg-rle is left out on purpose: on damaged data it panics with an exception
that cannot be caught as an error). JPEG 2000 wanted at reduced size is decoded by Pillow's
OpenJPEG at one of the codestream's own resolution levels (pylibjpeg-openjpeg has no such
option), which skips most of the work. A small file must not cost gigabytes: a deflated dataset
inflates under a ceiling, and a compressed frame's own header (or an RLE frame's decoded length) must
agree with the DICOM header's size before anything is decoded. No Flask, no TensorFlow.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import io
import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import openjpeg
import pydicom
from PIL import Image
from pydicom.encaps import get_frame
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.filewriter import write_file_meta_info
from pydicom.pixels import apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.pixels.utils import _get_jpg_parameters, get_expected_length
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, JPEG2000TransferSyntaxes,
                         JPEGLSTransferSyntaxes, JPEGTransferSyntaxes, RLELossless)

from . import jpeg_stream
from .pixels import (MAX_PIXELS, DecodedImage, InvalidImageError, check_dimensions, check_not_blank, normalise,
                     reduction, shrink)

#: Modalities of plain radiographs: computed and digital radiography, radiographic imaging.
RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "RG"})
#: Modalities that say nothing either way (scanned film, secondary capture): read with a warning.
UNSTATED_MODALITIES = frozenset({"", "OT"})
MODALITY_NAMES = {"CT": "a CT scan", "MR": "an MRI scan", "US": "an ultrasound image", "PT": "a PET scan",
                  "NM": "a nuclear medicine image", "XA": "an angiogram", "RF": "a fluoroscopy image",
                  "MG": "a mammogram", "SR": "a structured report", "PR": "a presentation state",
                  "SEG": "a segmentation", "KO": "a key object note"}
#: Image attributes that hold one number (a second value would make every check of them fail).
SINGLE_NUMBERS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel")
#: Elements the reading mends (case, a signed LUT start), in its own copy.
MENDED = frozenset({"PhotometricInterpretation", "PresentationLUTShape", "ModalityLUTSequence", "VOILUTSequence"})
#: Fewest grey levels a window or VOI LUT may leave of an image (a window of width 1 leaves 2).
MIN_GREY_LEVELS = 16
#: Photometric interpretations of colour images, named when a colour image is refused.
COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_422", "YBR_PARTIAL_420", "YBR_ICT",
                                 "YBR_RCT", "PALETTE COLOR", "HSV", "ARGB", "CMYK", "XYB"})
UNSTATED_WARNING = ("The DICOM header does not say this is a radiograph (no CR or DX modality); "
                    "check that it is a plain X-ray.")
#: Header elements shown with the result: (keyword, key). None of them identifies the patient.
CONTEXT_ELEMENTS = (("Modality", "modality"), ("BodyPartExamined", "body_part"), ("ViewPosition", "view_position"),
                    ("ImageLaterality", "laterality"), ("Laterality", "laterality"))
#: The standard's defined terms of Body Part Examined (PS3.16 Annex L), as highdicom ships them.
BODY_PART_TERMS = "_standard/anatomic_regions.json"
#: Body parts outside the standard's terms that many modalities write anyway.
COMMON_BODY_PARTS = frozenset({"ARM", "LEG"})
#: View Position's defined terms for radiographs (PS3.3 C.8.11.5, C.8.11.7) and the common short forms.
VIEW_POSITIONS = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO", "LAT", "LATERAL", "OBL", "OBLIQUE",
                            "AXIAL"})
LATERALITIES = frozenset({"R", "L", "B", "U"})
#: The only elements read from an upload (plus the file meta): what the pipeline and the context need.
READ_ELEMENTS = ["SpecificCharacterSet", "SOPClassUID", "Modality", "BodyPartExamined", "ViewPosition",
                 "ImageLaterality", "Laterality", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
                 "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                 "PlanarConfiguration", "RescaleSlope", "RescaleIntercept", "RescaleType", "ModalityLUTSequence",
                 "WindowCenter", "WindowWidth", "VOILUTFunction", "VOILUTSequence", "PresentationLUTShape",
                 "PixelPaddingValue", "PixelPaddingRangeLimit", "PixelData", "FloatPixelData", "DoubleFloatPixelData"]

DAMAGED = "The file looks like DICOM but could not be read; it may be damaged or incomplete."
#: The most a deflated dataset may inflate to: the largest image allowed, at 16 bits, and a megabyte of header.
MAX_INFLATED_BYTES = 2 * MAX_PIXELS + (1 << 20)
#: How much is inflated at a time, and so how far past ``MAX_INFLATED_BYTES`` a bomb gets.
INFLATE_STEP = 1 << 24
#: (7FE0,0010) Pixel Data as it appears in a little-endian file.
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"
#: What pydicom and its decoder plugins raise on damaged files (values of the wrong type included).
DAMAGE = (InvalidDicomError, BytesLengthException, struct.error, ValueError, EOFError, OSError, KeyError, TypeError,
          AttributeError, NotImplementedError, IndexError, OverflowError, RuntimeError)


def _no_decoder_tracebacks(record: logging.LogRecord) -> bool:
    """pydicom logs every decoder that fails on a frame, traceback and all, at ERROR, before it raises
    the failures together; the refusal then says it once (and its cause keeps the detail), so the log
    gets no traceback per refused file."""
    return record.exc_info is None


logging.getLogger("pydicom.pixels.decoders.base").addFilter(_no_decoder_tracebacks)


def decode_dicom(data: bytes, long_side: int | None = None) -> DecodedImage:
    """Decode a DICOM file's radiograph (:func:`decode_dataset`), parsing only the elements it needs."""
    return decode_dataset(read_header(data), long_side)


def decode_dataset(ds: pydicom.Dataset, long_side: int | None = None) -> DecodedImage:
    """Decode a parsed DICOM radiograph's first frame to float32 [0, 1], with warnings and header context.

    Only the elements in ``READ_ELEMENTS`` are looked at, whatever else the dataset holds, so a
    dataset parsed whole (the DICOM node's) decodes exactly as its file does. Refuses, with a
    message for a person: damaged values, files without pixel data, modalities other than
    radiography (CT, MR ...), colour images, bit depths outside 8-16 and, from the header alone,
    images too large, too small or too narrow. ``long_side`` shrinks the image as for other
    formats (:func:`fracture_web.pixels.reduction`).
    """
    ds = needed_elements(ds)
    warnings = check_radiograph(ds)
    try:
        declared = ds.get("NumberOfFrames")
        declared = 1 if declared in (None, "") else declared
        frames = int(declared)
        if frames != float(declared) or frames < 1:
            raise ValueError(declared)
    except (TypeError, ValueError) as err:
        raise InvalidImageError("The DICOM file's Number of Frames is not a whole number of at least 1; "
                                "the file may be damaged.") from err
    if frames > 1:
        warnings += (f"The DICOM file holds {frames} frames; only the first was analysed.",)
    size = (int(ds.Rows), int(ds.Columns))
    factor = reduction(size, long_side)
    try:
        stored, reduced = (encoded_first_frame if ds.file_meta.TransferSyntaxUID.is_encapsulated
                           else first_frame)(ds, factor)
        pixels = grayscale_pipeline(stored, ds, factor // reduced)
    except InvalidImageError:
        raise
    except DAMAGE as err:
        raise InvalidImageError(f"The DICOM image data could not be decoded ({syntax_name(ds)}); "
                                "the file may be damaged.") from err
    return DecodedImage(pixels, size, warnings, header_context(ds))


def _signed_lut_starts(ds: pydicom.Dataset) -> None:
    """A LUT Descriptor's first mapped value as a signed number for signed pixels: explicit-VR files
    often write the descriptor as US (65408 for -128), which pydicom then cannot index with."""
    if int(ds.get("PixelRepresentation") or 0) != 1:
        return
    for keyword in ("ModalityLUTSequence", "VOILUTSequence"):
        for item in ds.get(keyword) or ():
            descriptor = item.get("LUTDescriptor")
            if descriptor is not None and len(descriptor) == 3:
                item.LUTDescriptor = [int(descriptor[0]), _as_stored(int(descriptor[1]), True), int(descriptor[2])]


def syntax_name(ds: pydicom.Dataset) -> str:
    """The dataset's transfer syntax, named for a message (:func:`syntax_name_of`)."""
    return syntax_name_of(ds.file_meta.get("TransferSyntaxUID"))


def syntax_name_of(syntax: object) -> str:
    """A transfer syntax's name, or its UID where that is a valid UID; never any other text a
    header holds (it could hold a name)."""
    uid = pydicom.uid.UID(str(syntax or ""))
    return uid.name if uid.is_valid else "an unreadable transfer syntax"


def needed_elements(ds: pydicom.Dataset) -> pydicom.Dataset:
    """The dataset's elements in ``READ_ELEMENTS`` (and its file meta), each value parsed now so that
    damage shows up here, as one :class:`InvalidImageError`."""
    kept = pydicom.Dataset()
    kept.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
    kept.set_original_encoding(*ds.original_encoding)
    try:
        for keyword in READ_ELEMENTS:
            if keyword in ds:  # parsed (and an ambiguous VR resolved) in its own dataset; a copy where
                # the reading mends it below, so that the caller's dataset is left as it came
                kept[keyword] = copy.deepcopy(ds[keyword]) if keyword in MENDED else ds[keyword]
        kept.walk(lambda _ds, _elem: None)  # parse every value of the sequences too
        for keyword in ("PhotometricInterpretation", "PresentationLUTShape"):  # as checked: "monochrome1" too
            if keyword in kept:
                setattr(kept, keyword, str(kept[keyword].value).strip().upper())
        _signed_lut_starts(kept)
        if any(keyword in kept and kept[keyword].VM != 1 for keyword in SINGLE_NUMBERS):
            raise ValueError("an image attribute holds several values")
    except DAMAGE as err:
        raise InvalidImageError(DAMAGED) from err
    return kept


def encoded_first_frame(ds: pydicom.Dataset, factor: int = 1) -> tuple[np.ndarray, int]:
    """A compressed first frame's stored values, and by how much of ``factor`` they are already shrunk.

    The frame's own header must declare the DICOM header's size (:func:`check_frame_size`) before
    anything is decoded. JPEG 2000 comes at a reduced resolution level where the stream plainly
    matches its header; other syntaxes and anything unusual go through pydicom's decoders at full size."""
    syntax = ds.file_meta.TransferSyntaxUID
    codestream = get_frame(ds.PixelData, 0, number_of_frames=int(ds.get("NumberOfFrames") or 1))
    check_frame_size(codestream, syntax, (int(ds.Rows), int(ds.Columns)))
    if syntax in JPEGTransferSyntaxes or (syntax in JPEGLSTransferSyntaxes and jpeg_stream.frame(codestream)
                                          in jpeg_stream.FRAMES):  # pydicom's decoder reads a JPEG under either
        jpeg_stream.check_intact(codestream)
    if factor > 1 and syntax in JPEG2000TransferSyntaxes:
        reduced = _jpeg2000_reduced(ds, codestream, factor)
        if reduced is not None:
            return reduced
    return pixel_array(ds, index=0), 1


def check_frame_size(codestream: bytes, syntax: pydicom.uid.UID, size: tuple[int, int]) -> None:
    """Refuse a compressed frame whose own header declares another (rows, columns) than ``size``,
    the DICOM header's (checked against the limits already), or more than one sample (component)
    per pixel, where the DICOM header says grayscale: a tiny file can declare a frame of any
    size, and the decoder allocates it whole before anyone compares. RLE frames carry no size of
    their own: theirs is what each segment decodes to (:func:`_check_rle_segments`). Other
    compressions are refused."""
    if syntax in JPEG2000TransferSyntaxes:
        try:
            stream = openjpeg.get_parameters(codestream)
        except (RuntimeError, ValueError) as err:
            raise InvalidImageError(DAMAGED) from err
        declared, samples = (stream["rows"], stream["columns"]), stream["samples_per_pixel"]
    elif syntax in JPEGTransferSyntaxes or syntax in JPEGLSTransferSyntaxes:
        # pydicom's own reader of the SOF segment (its decoders use it to choose options)
        stream = _get_jpg_parameters(codestream)
        declared, samples = (stream.get("height"), stream.get("width")), stream.get("components")
    elif syntax == RLELossless:
        _check_rle_segments(codestream, size)
        return
    else:
        raise InvalidImageError(f"DICOM images compressed as {syntax_name_of(syntax)} are not supported; send the image "
                                "uncompressed, or as JPEG, JPEG-LS, JPEG 2000 or RLE.")
    if declared != size or samples != 1:
        found = ("no readable size" if None in declared or samples is None
                 else f"{declared[1]}x{declared[0]} pixels of {samples} sample(s)")
        raise InvalidImageError(f"The DICOM file is inconsistent: its compressed image declares {found}, "
                                f"its header {size[1]}x{size[0]} grayscale; it may be damaged or forged.")


def _check_rle_segments(codestream: bytes, size: tuple[int, int]) -> None:
    """Refuse an RLE frame with a segment that decodes to more than a row beyond the image's
    rows x columns bytes. pydicom decodes a segment whole, in Python, before it compares its length,
    and two bytes can ask for 128: a 32 MB upload for 2 GB. Pillow's PackBits decoder (the same
    code) decodes into an image of fixed size instead, in C, and says whether the segment filled it."""
    rows, columns = size
    count, *offsets = struct.unpack_from("<16L", codestream)  # the RLE header: segments, then where each starts
    for start, end in zip(offsets[:count], [*offsets[1:count], len(codestream)]):
        try:
            Image.frombytes("L", (columns, rows + 1), memoryview(codestream)[start:end], "packbits", "L")
        except ValueError:
            continue  # the segment ends before it fills one row more than the image has: as it should
        raise InvalidImageError(f"The DICOM file is inconsistent: its RLE-compressed image holds more than its "
                                f"header's {columns}x{rows} pixels; it may be damaged or forged.")


def first_frame(ds: pydicom.Dataset, factor: int = 1) -> tuple[np.ndarray, int]:
    """An uncompressed first frame's stored values, as a read-only view on the file's bytes (no
    copy), and by how much of ``factor`` they are already shrunk (never: 1). Pixel data of another
    length than the header's size calls for (one byte of padding aside) is refused: a wrong Rows,
    Columns or frame count would otherwise be read as a garbled or partial image."""
    expected, held = get_expected_length(ds), len(ds.PixelData)
    if held not in (expected, expected + 1):
        frames = int(ds.get("NumberOfFrames") or 1)
        raise InvalidImageError(f"The DICOM image could not be read: its pixel data holds {held} bytes where its "
                                f"header ({ds.Columns}x{ds.Rows}, {frames} frame(s) of {ds.BitsAllocated} bits) calls "
                                f"for {expected}; the file may be damaged, cut off or forged.")
    frame = pixel_array(ds, index=0, view_only=True, correct_unused_bits=False)
    bits = int(ds.BitsStored)
    low, high = (-(1 << bits - 1), (1 << bits - 1) - 1) if frame.dtype.kind == "i" else (0, (1 << bits) - 1)
    if frame.min() < low or frame.max() > high:  # the unused high bits hold something: pydicom clears them
        frame = pixel_array(ds, index=0)
    return frame, 1


def _jpeg2000_reduced(ds: pydicom.Dataset, codestream: bytes, factor: int) -> tuple[np.ndarray, int] | None:
    """The first frame (``codestream``) decoded at 1/``factor`` a side, or at the smallest resolution
    level the codestream holds above that; None where the stream's size or sample format differs from
    the header's (pydicom reconciles or refuses those) or the stream cannot be read this way."""
    levels = min(factor.bit_length() - 1, wavelet_levels(codestream))
    stream = openjpeg.get_parameters(codestream)
    bits, signed = int(ds.BitsStored), int(ds.get("PixelRepresentation") or 0) == 1
    if levels == 0 or (stream["rows"], stream["columns"], stream["samples_per_pixel"], stream["precision"],
                       stream["is_signed"]) != (int(ds.Rows), int(ds.Columns), 1, bits, signed):
        return None
    try:
        with Image.open(io.BytesIO(codestream)) as image:
            image.reduce = levels  # OpenJPEG decodes only the resolution levels it needs
            coded = np.asarray(image)
    except OSError:
        return None
    # Pillow scales samples up to its 8 or 16 bits and offsets signed ones to unsigned: undo both.
    values = coded >> (coded.dtype.itemsize * 8 - bits)
    if signed:
        values = (values.astype(np.int32) - (1 << bits - 1)).astype(np.int16)
    return values, 1 << levels


def wavelet_levels(codestream: bytes) -> int:
    """The number of wavelet decompositions in a JPEG 2000 codestream's main header (its COD
    marker, ISO/IEC 15444-1 A.6.1): how many times each side can be halved while decoding."""
    position = 2  # after SOC
    while position + 10 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, position)
        if marker == 0xFF52:  # COD: Lcod, Scod, SGcod (4 bytes), then the decomposition levels
            return codestream[position + 9]
        if marker == 0xFF90 or marker >> 8 != 0xFF:  # a tile starts: the main header is over
            return 0
        position += 2 + length
    return 0


def read_header(data: bytes) -> pydicom.Dataset:
    """Parse the file's elements in ``READ_ELEMENTS`` alone (what :func:`decode_dataset` needs)."""
    return read_dataset(data, READ_ELEMENTS)


def read_dataset(data: bytes, elements: list[str] | None = None) -> pydicom.Dataset:
    """Parse a DICOM file (only ``elements`` where given), inflated within the ceiling (:func:`inflated`);
    refuse what is not DICOM or is cut off. Values are parsed when first used (:func:`needed_elements`)."""
    data = inflated(data)
    try:
        ds = pydicom.dcmread(io.BytesIO(data), specific_tags=elements)
    except DAMAGE as err:
        raise InvalidImageError(DAMAGED) from err
    check_complete(ds, data)
    return ds


#: The elements that say whose images a file holds (compared between a study's files, never kept).
PATIENT_ELEMENTS = ["PatientID", "IssuerOfPatientID", "PatientName"]


def patient_fingerprint(data: bytes) -> str | None:
    """A digest of the patient a DICOM file names (ID with its issuer, else the name), to tell
    whether two files are of one patient without holding who it is; None where the file names none
    or cannot be read (its analysis says why)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(inflated(data)), specific_tags=PATIENT_ELEMENTS)
        values = [str(ds.get(name) or "").strip() for name in PATIENT_ELEMENTS]
    except DAMAGE:  # InvalidImageError is a ValueError
        return None
    key = values[:2] if values[0] else ["", "", values[2]]
    return hashlib.sha256("\\".join(key).encode()).hexdigest() if any(key) else None


def check_complete(ds: pydicom.Dataset, data: bytes) -> None:
    """Refuse a dataset whose encoding (``data``) announces pixel data that the parse did not get: cut off."""
    if PIXEL_DATA_TAG in data and "PixelData" not in ds:
        raise InvalidImageError(DAMAGED)


def inflated(data: bytes) -> bytes:
    """A DICOM file as it is or, where its transfer syntax is Deflated Explicit VR Little Endian, the
    same file with its dataset inflated and its transfer syntax Explicit VR Little Endian.

    pydicom (and pynetdicom) inflate a whole deflated dataset at once, with no limit: a 1 MB file
    can ask for gigabytes. Here the stream inflates with a ceiling, ``MAX_INFLATED_BYTES``, and a
    file that would pass it is refused as soon as it does."""
    fp = io.BytesIO(data)
    try:
        read_preamble(fp, False)
        meta = _read_file_meta_info(fp)  # pydicom's reader of the file meta (group 2) alone
        syntax = meta.get("TransferSyntaxUID")  # converted from its raw bytes here, so it may raise too
    except DAMAGE as err:
        raise InvalidImageError(DAMAGED) from err
    if syntax != DeflatedExplicitVRLittleEndian:
        return data
    dataset = _inflate(memoryview(data)[fp.tell():])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = DicomBytesIO()
    write_file_meta_info(head, meta, enforce_standard=False)  # the group length follows the new UID
    return b"".join([data[:132], head.getvalue(), *dataset])


def _inflate(stream: memoryview) -> list[bytes]:
    """A raw deflate stream inflated, in pieces of ``INFLATE_STEP`` bytes; refused once they add up
    to more than ``MAX_INFLATED_BYTES`` (so a bomb costs no more than that), or when it is cut off."""
    inflater, pieces, size = zlib.decompressobj(-zlib.MAX_WBITS), [], 0
    try:
        while not inflater.eof:
            piece = inflater.decompress(stream, INFLATE_STEP)
            stream = inflater.unconsumed_tail
            if not piece and not stream:
                raise InvalidImageError(DAMAGED)  # the deflated stream is cut off
            size += len(piece)
            if size > MAX_INFLATED_BYTES:
                raise InvalidImageError(f"The DICOM file is too large once inflated (over {MAX_INFLATED_BYTES >> 20} "
                                        "MB, more than the largest radiograph accepted); it may be a decompression bomb.")
            pieces.append(piece)
    except zlib.error as err:
        raise InvalidImageError(DAMAGED) from err
    return pieces


def check_radiograph(ds: pydicom.Dataset) -> tuple[str, ...]:
    """Refuse what the model cannot read, from the header alone; returns warnings for the rest."""
    if not any(name in ds for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise InvalidImageError("This DICOM file holds no image (no pixel data); it may be a report or a "
                                "document. Upload the radiograph itself.")
    modality = str(ds.get("Modality") or "").strip().upper()
    if modality not in RADIOGRAPH_MODALITIES | UNSTATED_MODALITIES:
        kind = f"{MODALITY_NAMES[modality]} (modality {modality})" if modality in MODALITY_NAMES \
            else "of another modality"  # an unknown value is not repeated: it could be anything, a name too
        raise InvalidImageError(f"This DICOM file is {kind}, not an X-ray radiograph; "
                                "the model reads plain radiographs (CR or DX) only.")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or int(ds.get("SamplesPerPixel") or 1) != 1:
        named = photometric if photometric in COLOUR_PHOTOMETRICS else "unknown"
        raise InvalidImageError(f"This DICOM image is in colour ({named}); radiographs are "
                                "grayscale (MONOCHROME1 or MONOCHROME2).")
    high_bit = ds.get("HighBit")
    if high_bit is not None and int(ds.get("BitsStored") or 0) and int(high_bit) != int(ds.BitsStored) - 1:
        raise InvalidImageError(f"This DICOM image keeps its {int(ds.BitsStored)} bits in an unusual place (High Bit "
                                f"{int(high_bit)}), which is not supported; export it with High Bit = Bits Stored - 1.")
    if "PixelData" not in ds:
        raise InvalidImageError("DICOM images with floating-point pixel data are not supported (whole numbers "
                                "of 8 to 16 bits are).")
    bits = int(ds.get("BitsStored") or 0)
    if not 8 <= bits <= 16:
        raise InvalidImageError(f"DICOM images with {bits} bits per pixel are not supported (8 to 16 bits are).")
    check_dimensions(int(ds.get("Columns") or 0), int(ds.get("Rows") or 0))
    return () if modality in RADIOGRAPH_MODALITIES else (UNSTATED_WARNING,)


def grayscale_pipeline(stored: np.ndarray, ds: pydicom.Dataset, factor: int = 1) -> np.ndarray:
    """Stored values -> displayed brightness as float32 [0, 1] in 256 levels (the model's 8 bits),
    shrunk by ``factor``.

    The chain depends on the stored value alone, so it runs once over every value the stored
    type can hold (:func:`grayscale_lut`) and the image is looked up in that table, once, after
    it has been shrunk: no floating-point copy of the full-size image is ever made.
    """
    stored = stored.astype(np.int16 if stored.dtype.kind == "i" else np.uint8 if stored.dtype.itemsize == 1
                           else np.uint16, copy=False)  # BitsStored <= 16 fits; native byte order
    padding = _padding(ds, stored) if "PixelPaddingValue" in ds else None
    low, high = _picture_range(stored, padding)
    with np.errstate(invalid="ignore", over="ignore"):  # NaN and infinity are refused, not warned about
        lut = grayscale_lut(ds, stored.dtype, low, high)
    if padding is not None and padding.any():
        stored = _blackened_padding(stored, padding, lut, low, high)
    small = shrink(stored, factor)  # area averages stay within the stored range
    # indexing casts the 16-bit indices in small buffers (np.take would widen them all to 64 bits first)
    return lut[small.view(np.uint8 if small.dtype == np.uint8 else np.uint16)]


def grayscale_lut(ds: pydicom.Dataset, dtype: np.dtype, low: int, high: int) -> np.ndarray:
    """The whole pipeline as a table: entry ``i`` is the float32 brightness of the stored value
    whose bits read ``i`` unsigned (so signed values index by their two's complement).

    Modality LUT, then the file's VOI LUT or first window, whose output range becomes [0, 1]
    (outside the window is clipped, as a viewer shows it). Without either, the range of the
    values the image holds (stored ``low`` to ``high``) is stretched to [0, 1], as for PNG and
    JPEG uploads, so the same radiograph gives the same input in any format. MONOCHROME1 (low
    values white) and Presentation LUT Shape INVERSE say the same thing (PS3.3 C.8.11.6.1.2),
    so either inverts once.
    """
    unsigned = np.dtype(f"u{np.dtype(dtype).itemsize}")
    codes = np.arange(np.iinfo(unsigned).max + 1).astype(unsigned).view(dtype)
    padding = _padding(ds, codes)
    held = (codes >= low) & (codes <= high) & ~padding
    values = apply_modality_lut(codes, ds)
    if not np.isfinite(values[held]).all():
        raise InvalidImageError("The DICOM file's Rescale Slope, Rescale Intercept or Modality LUT turns its pixels "
                                "into values that are not numbers (NaN or infinity); the image cannot be read.")
    if _has_voi(ds):
        out_low, out_high = _voi_output_range(ds)
        unit = np.clip((apply_voi_lut(_as_lut_input(values, ds), ds) - out_low) / (out_high - out_low), 0.0, 1.0)
        check_not_blank(unit[held])
        levels = len(np.unique(np.rint(unit[held] * 255.0)))
        if levels < MIN_GREY_LEVELS:
            raise InvalidImageError(f"The DICOM file's window or VOI LUT leaves the image only {levels} grey levels "
                                    "(a window far too narrow?), too few to read; export it with its usual window.")
    else:
        unit = np.clip(normalise(values, check_not_blank(values[held])), 0.0, 1.0)
    inverse = str(ds.get("PresentationLUTShape") or "").strip().upper() == "INVERSE"
    if str(ds.PhotometricInterpretation).strip().upper() == "MONOCHROME1" or inverse:
        unit = 1.0 - unit
    unit[padding] = 0.0  # black, as the letterbox pads
    return (np.rint(unit * 255.0) / 255.0).astype(np.float32)


def _blackened_padding(stored: np.ndarray, padding: np.ndarray, lut: np.ndarray, low: int, high: int) -> np.ndarray:
    """``stored`` with its ``padding`` pixels set to the picture's stored value that shows darkest, so
    that shrinking averages the picture's edge with black, as it is shown, not with the padding's value."""
    codes = np.arange(low, high + 1).astype(stored.dtype)
    darkest = codes[np.argmin(lut[codes.view(np.uint8 if stored.dtype.itemsize == 1 else np.uint16)])]
    blackened = stored.copy()
    blackened[padding] = darkest
    return blackened


def _picture_range(stored: np.ndarray, padding: np.ndarray | None) -> tuple[int, int]:
    """The lowest and highest stored values of the picture: its ``padding`` pixels left out."""
    picture = stored if padding is None else stored[~padding]
    if picture.size == 0:
        raise InvalidImageError("The image is blank (every pixel is padding).")
    return int(picture.min()), int(picture.max())


def _padding(ds: pydicom.Dataset, codes: np.ndarray) -> np.ndarray:
    """Which stored values are Pixel Padding (outside the picture: PS3.3 C.7.5.1.1.2), the Pixel Padding
    Value alone or up to the Pixel Padding Range Limit; they take no part in the image's range."""
    value, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
    if value is None:
        return np.zeros(codes.shape, dtype=bool)
    signed = int(ds.get("PixelRepresentation") or 0) == 1
    first, last = sorted(_as_stored(int(v), signed) for v in (value, limit if limit is not None else value))
    return (codes >= first) & (codes <= last)


def _as_stored(value: int, signed: bool) -> int:
    """A 16-bit value written unsigned (as explicit-VR files often do) as the signed pixels read it."""
    return value - 0x10000 if signed and value > 0x7FFF else value


def _has_voi(ds: pydicom.Dataset) -> bool:
    """True when the file carries a usable VOI LUT or window (as pydicom's apply_voi_lut decides)."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        return True
    return ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None


def _voi_output_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """What the VOI maps its lowest and highest inputs to: the output range that becomes [0, 1]."""
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        entries, first, _bits = lut[0].LUTDescriptor
        probe = np.array([first, first + (entries or 2**16) - 1], dtype=np.int64)
    else:
        probe = np.array([-np.inf, np.inf])  # a window maps everything below/above it to its ends
    unusable = InvalidImageError("The DICOM file's VOI LUT or window is unusable (its output range is empty, "
                                 "or its centre or width is not a number or not positive).")
    try:
        low, high = sorted(float(v) for v in apply_voi_lut(probe, ds))  # a LUT may run downhill
    except ValueError as err:  # pydicom's refusal of a window width under 1
        raise unusable from err
    if not high > low:  # NaN compares false: refused too
        raise unusable
    return low, high


def _as_lut_input(values: np.ndarray, ds: pydicom.Dataset) -> np.ndarray:
    """A VOI LUT is indexed by integers; a window takes the (possibly rescaled) values as they are."""
    lut = ds.get("VOILUTSequence")
    return np.rint(values).astype(np.int64) if lut and values.dtype.kind == "f" else values


def header_context(ds: pydicom.Dataset) -> dict[str, str]:
    """Non-identifying header facts for the result (e.g. ``{"modality": "DX"}``), only those the file
    has, and only values from each element's own vocabulary: a header can hold anything (a name
    typed into Body Part Examined), and these facts reach the page, the reads database and the CLI."""
    context: dict[str, str] = {}
    for keyword, key in CONTEXT_ELEMENTS:
        value = str(ds.get(keyword) or "").strip().upper()
        if value in allowed_values(key) and key not in context:  # image laterality first, then series'
            context[key] = value
    return context


def allowed_values(key: str) -> frozenset[str]:
    """The values a header fact may take (:data:`CONTEXT_ELEMENTS`' keys)."""
    return {"modality": RADIOGRAPH_MODALITIES | {"OT"}, "body_part": body_parts() | COMMON_BODY_PARTS,
            "view_position": VIEW_POSITIONS, "laterality": LATERALITIES}[key]


@functools.cache
def body_parts() -> frozenset[str]:
    """Body Part Examined's defined terms, read from highdicom's copy of the standard's table."""
    package = importlib.util.find_spec("highdicom")
    folder = Path(next(iter(package.submodule_search_locations)))
    return frozenset(json.loads((folder / BODY_PART_TERMS).read_text(encoding="utf-8")))
