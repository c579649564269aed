"""The DICOM node: a Storage SCP that analyses each radiograph a PACS sends it and stores the
result back in the same study (a Secondary Capture image with the findings boxed, and a TID 1500
Measurement Report: a Comprehensive SR with each finding as a region of the image).

Run it with ``python -m fracture_web.dicom_node``; settings come from ``FRACTURE_DICOM_*``
environment variables (see :mod:`fracture_web.dicom_node.config`).
"""
