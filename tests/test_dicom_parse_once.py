"""A radiograph is parsed once on the node's path: the node hands on the dataset pynetdicom decoded
(and a worker parses the file it was sent once), and a dataset decodes to the very pixels its file
does, whatever its transfer syntax. A prediction is written out in one shape and read back whole."""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import replace

import numpy as np
import pydicom.filereader
import pytest
import pynetdicom.events
from pydicom.dataset import Dataset
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.sequence import Sequence
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, ImplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.dsutils import decode
from redis import Redis

from fracture_web.analysis import analyse, analyse_dataset
from fracture_web.dicom import decode_dataset, decode_dicom, read_dataset
from fracture_web.dicom_node.archive import result_row
from fracture_web.dicom_node.broker import BrokerNode
from fracture_web.dicom_node.readings import Reading
from fracture_web.dicom_node.sender import CStoreSender
from fracture_web.dicom_node.server import Node
from fracture_web.dicom_node.shared_studies import SharedStudies
from fracture_web.dicom_node.tasks import ANALYSE, WorkerContext, celery_app
from fracture_web.inference import NO_HEATMAP, Prediction

from dicom_files import BOXES, PATIENT, jpeg2000, jpeg_baseline, radiograph_dataset, reading_of, rle, to_bytes
from helpers import synthetic_xray
from servers import REDIS, redis_server
from test_dicom_node_faults import MODALITY_AE, free_port, node_config, running

needs_redis = pytest.mark.skipif(REDIS is None, reason="redis-server is not installed (make test installs the Debian "
                                 "package 'redis-server' as root with apt-get)")


def _gray() -> np.ndarray:
    return synthetic_xray(np.random.default_rng(23), crack=True, size=(300, 240))


def _voi_lut() -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.LUTData = (65535 - 257 * np.arange(256, dtype=np.uint16)).tobytes()
    item["LUTData"].VR = "OW"
    return item


def _syntax(syntax):
    def encode(ds):
        ds.file_meta.TransferSyntaxUID = syntax
        return ds
    return encode


#: Files in every transfer syntax and grayscale chain the tests build, by name.
FILES = {
    "explicit": lambda: radiograph_dataset(_gray()),
    "implicit": lambda: _syntax(ImplicitVRLittleEndian)(radiograph_dataset(_gray())),
    "big endian": lambda: _syntax(ExplicitVRBigEndian)(radiograph_dataset(_gray().astype(np.uint16) * 16, bits_stored=12)),
    "deflated": lambda: _syntax(DeflatedExplicitVRLittleEndian)(radiograph_dataset(_gray())),
    "12-bit window": lambda: radiograph_dataset(_gray().astype(np.uint16) * 16, bits_stored=12, WindowCenter=2048,
                                                WindowWidth=1024),
    "signed rescaled": lambda: radiograph_dataset(_gray().astype(np.int16) - 100, "MONOCHROME1", RescaleSlope=2,
                                                  RescaleIntercept=-50),
    "VOI LUT": lambda: radiograph_dataset(_gray(), VOILUTSequence=Sequence([_voi_lut()])),
    "RLE": lambda: rle(radiograph_dataset(_gray())),
    "JPEG 2000": lambda: jpeg2000(radiograph_dataset(_gray().astype(np.uint16) * 16, bits_stored=12)),
    "JPEG baseline": lambda: jpeg_baseline(radiograph_dataset(_gray())),
}


def as_received(data: bytes) -> Dataset:
    """The dataset as the node's Storage SCP gets it: decoded by pynetdicom from the bytes after the file meta."""
    fp = io.BytesIO(data)
    read_preamble(fp, False)
    meta = _read_file_meta_info(fp)
    syntax = meta.TransferSyntaxUID
    ds = decode(io.BytesIO(data[fp.tell():]), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated)
    ds.file_meta = meta
    return ds


@pytest.mark.parametrize("long_side", [None, 64])
@pytest.mark.parametrize("name", FILES)
def test_a_dataset_decodes_to_the_same_pixels_as_its_file_bit_for_bit(name, long_side):
    data = to_bytes(FILES[name]())
    from_file = decode_dicom(data, long_side)
    parsed = [read_dataset(data)]  # parsed whole, as a worker does
    if name != "deflated":  # the node parses a deflated one from its file (bounded inflation)
        parsed.append(as_received(data))
    for ds in parsed:
        decoded = decode_dataset(ds, long_side)
        assert decoded.pixels.dtype == from_file.pixels.dtype
        assert decoded.pixels.tobytes() == from_file.pixels.tobytes()
        assert (decoded.size, decoded.warnings, decoded.context) == (from_file.size, from_file.warnings,
                                                                     from_file.context)


def test_a_dataset_is_refused_as_its_file_is():
    bad = radiograph_dataset(_gray(), RescaleSlope="NaN", RescaleIntercept=0)
    with pytest.raises(ValueError) as from_file:
        decode_dicom(to_bytes(bad))
    with pytest.raises(ValueError) as from_dataset:
        decode_dataset(as_received(to_bytes(bad)))
    assert str(from_dataset.value) == str(from_file.value)


def test_a_datasets_analysis_is_its_files_bit_for_bit(model):
    ds = radiograph_dataset(_gray())
    from_file, from_dataset = analyse(to_bytes(ds), model), analyse_dataset(as_received(to_bytes(ds)), model)
    assert from_dataset.prediction.probability == from_file.prediction.probability
    assert from_dataset.as_dict() == from_file.as_dict()
    assert from_dataset.overlay.tobytes() == from_file.overlay.tobytes()


@pytest.fixture
def parses(monkeypatch):
    """Every parse of a DICOM dataset in this process: pydicom's file reader (``dcmread``) and pynetdicom's
    decoding of a received instance (``event.dataset``)."""
    counted = Counter()

    def counting(owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            counted[name] += 1
            return original(*args, **kwargs)
        monkeypatch.setattr(owner, name, wrapper)

    counting(pydicom.filereader, "read_partial")  # every dcmread
    counting(pynetdicom.events, "decode")  # the received instance's dataset
    return counted


def c_store(port: int, ds: Dataset) -> int:
    """Send one dataset to the node in its own transfer syntax; the status."""
    ae = AE(ae_title=MODALITY_AE)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="FRACTURE_AI")
    try:
        return assoc.send_c_store(ds).Status
    finally:
        assoc.release()


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "deflated"])
def test_the_one_box_node_parses_each_received_radiograph_once(model, tmp_path, parses, syntax):
    source = FILES[syntax]()
    config = node_config(tmp_path, free_port(), settle_seconds=3600)  # no delivery during the count
    with running(Node(config, model)) as node:
        assert c_store(config.port, source) == 0x0000
        assert sum(parses.values()) == 1
        (study,) = node.collector.folder.iterdir()
    (json_file,) = study.glob("*.json")
    reading = Reading.from_json(json_file.read_text())
    assert reading.source.PatientID == PATIENT["PatientID"] and reading.prediction.model_version == model.version


@needs_redis
def test_with_a_broker_the_node_and_the_worker_each_parse_a_radiograph_once(model, tmp_path, parses):
    source = radiograph_dataset(_gray())
    with redis_server(tmp_path) as url:
        config = replace(node_config(tmp_path, free_port()), broker_url=url)
        node, queued = BrokerNode(config), []
        node.app.send_task = lambda name, args, **options: queued.append((name, args))
        with running(node):
            assert c_store(config.port, source) == 0x0000
        assert parses == {"decode": 1}  # pynetdicom's; the file goes to Redis as it came
        app = celery_app(config)
        app.context = WorkerContext(config, model, CStoreSender(config), SharedStudies(Redis.from_url(url), 3600))
        app.send_task, sent = (lambda name, args, **options: sent.append(name)), []
        (name, args), = queued
        parses.clear()
        assert name == ANALYSE and app.tasks[ANALYSE].apply(args=args).successful()
        assert parses == {"read_partial": 1} and len(sent) == 2  # its Secondary Capture and its study's check


def test_a_prediction_is_written_out_in_one_shape_and_read_back_whole():
    p = Prediction("fractured", True, 0.123456789, 0.3, "balanced", "m1", np.ones((4, 4), np.float32),
                   atypicality=1.5, calibration="site", findings=BOXES)
    written = p.as_dict()
    assert Prediction.from_dict(json.loads(json.dumps(written))) == replace(p, heatmap=NO_HEATMAP)
    assert set(written) == {"label", "fractured", "probability", "threshold", "operating_point", "model_version",
                            "atypicality", "calibration", "findings"}
    assert written["probability"] == 0.123456789 and p.as_dict(rounded=True)["probability"] == 0.123457
    assert p.as_dict(rounded=True)["findings"] == [finding.as_dict() for finding in BOXES]


def test_the_api_the_readings_the_archive_and_the_audit_carry_the_same_values(model):
    ds = radiograph_dataset(_gray())
    data = to_bytes(ds)
    analysis = analyse(data, model, images=False)
    written = analysis.prediction.as_dict(rounded=True)
    api, row = analysis.as_dict(), result_row("a.dcm", data, model, None)
    reading = Reading.from_json(reading_of(ds, analysis).to_json())
    for key in ("label", "probability", "threshold", "operating_point", "model_version"):
        assert api[key] == row[key] == written[key]
    assert reading.prediction == replace(analysis.prediction, heatmap=reading.prediction.heatmap)
    assert reading.warnings == analysis.warnings
