"""The DICOM node: a Storage SCP that analyses the radiographs a PACS sends it and stores the results
back in the same study: a Secondary Capture per image, with the findings boxed, and per study a TID
1500 Measurement Report (a Comprehensive SR with the study's verdict, each image's verdict and each
finding as a region of its image), once the study's images have stopped arriving. Results go by
DICOM C-STORE or by DICOMweb STOW-RS.

Run it with ``python -m fracture_web.dicom_node``; settings come from ``FRACTURE_DICOM_*``,
``FRACTURE_DICOMWEB_*`` and ``FRACTURE_BROKER_*`` environment variables (see
:mod:`fracture_web.dicom_node.config`). On one box the node reads the images itself (:mod:`.server`);
with ``FRACTURE_BROKER_URL`` it only receives (:mod:`.broker`) and workers on any number of hosts,
``python -m fracture_web.dicom_node.worker``, read them and send the results (:mod:`.tasks`).
"""
