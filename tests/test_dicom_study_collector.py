"""A study's views arrive one by one: the node keeps each on disk as it comes, reports the study once
no new view has come for the settling time, re-issues the report when a view comes late, and loses
nothing it acknowledged when it restarts while a study settles (StudyCollector, with a clock the
test moves; no network, no model)."""
from __future__ import annotations

import copy
import stat
from datetime import datetime

import numpy as np
import pytest
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage, generate_uid

from fracture_web.dicom_node.collector import StudyCollector
from fracture_web.dicom_node.dead_letter import DeadLetters
from fracture_web.dicom_node.server import study_results

from dicom_files import BOXES, PATIENT, analysis_of, cited, radiograph_study, report_of, sc_of
from helpers import synthetic_xray

SETTLE, KEEP = 5.0, 3600.0
NOW = 1_800_000_000.0


class Clock:
    """Wall-clock seconds that move only when the test says."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def views():
    """Three views of one study, as (source, analysis): the third is the one with findings."""
    rng = np.random.default_rng(3)
    sources = radiograph_study([synthetic_xray(rng, crack=i == 2, size=(400, 320)) for i in range(3)])
    return [(source, analysis_of(source, i == 2, BOXES if i == 2 else ())) for i, source in enumerate(sources)]


def receive(collector: StudyCollector, source, analysis) -> None:
    """What the node does with a received radiograph before it answers the C-STORE."""
    collector.add(source, analysis.prediction, analysis.warnings, [sc_of(source, analysis, datetime(2026, 11, 28, 9, 0, 0))])


def test_a_study_is_reported_once_no_new_view_came_for_the_settling_time(views, tmp_path):
    clock = Clock()
    collector = StudyCollector(tmp_path, SETTLE, KEEP, clock)
    receive(collector, *views[0])
    clock.now += 3
    receive(collector, *views[1])
    clock.now += 4  # 7 s after the first view, 4 after the second: still settling
    assert collector.settled() == []
    clock.now += 1
    (study,) = collector.settled()
    assert [r.source.SOPInstanceUID for r in study.readings] == [views[0][0].SOPInstanceUID, views[1][0].SOPInstanceUID]
    results = study_results(study, DeadLetters(tmp_path / "dead-letter"))
    assert [ds.SOPClassUID for ds in results] == [SecondaryCaptureImageStorage] * 2 + [ComprehensiveSRStorage]
    collector.delivered(study)
    assert collector.settled() == []


def test_a_late_view_reissues_the_report_of_the_whole_study_under_the_same_uid(views, tmp_path):
    clock = Clock()
    collector = StudyCollector(tmp_path, SETTLE, KEEP, clock)
    for view in views[:2]:
        receive(collector, *view)
    clock.now += SETTLE
    (study,) = collector.settled()
    *_scs, first_report = study_results(study, DeadLetters(tmp_path / "dead-letter"))
    collector.delivered(study)
    clock.now += 600  # the oblique view comes ten minutes later
    receive(collector, *views[2])
    clock.now += SETTLE
    (late,) = collector.settled()
    *scs, report = study_results(late, DeadLetters(tmp_path / "dead-letter"))
    assert [sc.SourceImageSequence[0].ReferencedSOPInstanceUID for sc in scs] == [views[2][0].SOPInstanceUID]
    assert report.SOPInstanceUID == first_report.SOPInstanceUID  # the PACS keeps the latest
    assert len(report_of(first_report).get_planar_roi_measurement_groups()) == 0
    content = report_of(report)
    for source, _analysis in views:
        assert content.get_image_measurement_groups(referenced_sop_instance_uid=source.SOPInstanceUID)
    assert len(content.get_planar_roi_measurement_groups()) == len(BOXES)


def test_nothing_acknowledged_is_lost_when_the_node_restarts_while_a_study_settles(views, tmp_path):
    clock = Clock()
    before = StudyCollector(tmp_path / "studies", SETTLE, KEEP, clock)
    for view in views:
        receive(before, *view)
        clock.now += 1
    del before  # the node stops (or crashes) before the study has settled
    clock.now += 1
    after = StudyCollector(tmp_path / "studies", SETTLE, KEEP, clock)
    assert after.settled() == []  # the settling time still counts from the last view's arrival
    clock.now += 3
    (study,) = after.settled()
    assert [r.source.SOPInstanceUID for r in study.readings] == [source.SOPInstanceUID for source, _a in views]
    assert [r.prediction for r in study.readings][2].findings == BOXES
    *scs, report = study_results(study, DeadLetters(tmp_path / "dead-letter"))
    assert len(scs) == 3 and all(sc.pixel_array.shape[2] == 3 for sc in scs)
    assert report.PatientName == PATIENT["PatientName"] and report.StudyInstanceUID == views[0][0].StudyInstanceUID


def test_what_waits_on_disk_is_private_and_names_no_patient_or_uid(views, tmp_path):
    collector = StudyCollector(tmp_path / "studies", SETTLE, KEEP, Clock())
    receive(collector, *views[0])
    folders = [tmp_path / "studies", *(tmp_path / "studies").iterdir()]
    files = [path for path in (tmp_path / "studies").rglob("*") if path.is_file()]
    assert {stat.S_IMODE(folder.stat().st_mode) for folder in folders} == {0o700}
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {0o600} and len(files) == 2
    names = " ".join(str(path.relative_to(tmp_path)) for path in files)
    source = views[0][0]
    assert not any(str(value) in names for value in (*PATIENT.values(), source.StudyInstanceUID, source.SOPInstanceUID))


def test_a_reported_study_is_not_sent_again_after_a_restart_and_is_forgotten_after_the_keep_time(views, tmp_path):
    clock = Clock()
    collector = StudyCollector(tmp_path, SETTLE, KEEP, clock)
    receive(collector, *views[0])
    clock.now += SETTLE
    (study,) = collector.settled()
    collector.delivered(study)
    assert StudyCollector(tmp_path, SETTLE, KEEP, clock).settled() == []
    assert [path.suffix for path in (tmp_path / study.key).iterdir()] in ([".json", ""], ["", ".json"])
    clock.now += KEEP + 1
    StudyCollector(tmp_path, SETTLE, KEEP, clock)
    assert list(tmp_path.iterdir()) == []


def test_a_write_cut_short_by_a_crash_is_cleared_at_start(views, tmp_path):
    clock = Clock()
    receive(StudyCollector(tmp_path, SETTLE, KEEP, clock), *views[0])
    (folder,) = tmp_path.iterdir()
    (folder / "0123.dcm.partial").write_bytes(b"half a file")
    clock.now += SETTLE
    (study,) = StudyCollector(tmp_path, SETTLE, KEEP, clock).settled()
    assert not list(folder.glob("*.partial")) and len(study.waiting) == 1


def test_two_patients_given_the_same_study_uid_by_a_modality_each_get_their_own_report(views, tmp_path):
    # A modality with a badly set UID root gives Bob's fractured wrist the Study Instance UID of
    # Alice's examination; and two walk-in patients with no Patient ID do the same.
    alice, alice_analysis = views[0]
    bob, bob_analysis = views[2]  # the view with findings, in the same study by UID
    bob = copy.deepcopy(bob)
    bob.PatientID, bob.PatientName = "PID-0452-XRAY", "Roe^Bob"
    carol, dave = (copy.deepcopy(views[1][0]) for _ in range(2))
    for source, name in ((carol, "Poe^Carol"), (dave, "Moe^Dave")):
        source.SOPInstanceUID, source.PatientID, source.PatientName = generate_uid(), "", name
    clock = Clock()
    collector = StudyCollector(tmp_path, SETTLE, KEEP, clock)
    for source, analysis in ((alice, alice_analysis), (bob, bob_analysis), (carol, views[1][1]), (dave, views[1][1])):
        receive(collector, source, analysis)
    clock.now += SETTLE
    reports = [study_results(study, DeadLetters(tmp_path / "dead-letter"))[-1] for study in collector.settled()]
    filed = {str(sr.PatientName): cited(sr) for sr in reports}
    assert filed == {"Doe^Jane": [alice.SOPInstanceUID], "Roe^Bob": [bob.SOPInstanceUID],  # never merged under Alice
                     "Poe^Carol": [carol.SOPInstanceUID], "Moe^Dave": [dave.SOPInstanceUID]}
    assert {str(sr.PatientID) for sr in reports} == {PATIENT["PatientID"], "PID-0452-XRAY", ""}
    assert len({sr.SOPInstanceUID for sr in reports}) == 4  # four reports: none replaces another in the PACS
