# The fracture detection assistant: the web app behind gunicorn (the default command), and with another
# command the DICOM node and its workers. docs/operations.md (Docker) has the commands; in short:
#   docker build -t fracture-web .                          full: TensorFlow, LiteRT and ONNX Runtime (requirements.txt)
#   docker build --build-arg REQUIREMENTS=requirements-slim.txt -t fracture-web:slim .
#                                                            slim: LiteRT only, for remote sites
#   docker run -p 5000:5000 fracture-web                     the web app on http://localhost:5000
#   docker run -p 11112:11112 -e FRACTURE_DICOM_DEST_HOST=... -e FRACTURE_DICOM_DEST_AE_TITLE=... \
#     fracture-web python -m fracture_web.dicom_node         the DICOM node
#   docker run -e FRACTURE_BROKER_URL=redis://... -e ... fracture-web python -m fracture_web.dicom_node.worker
# tests/test_container.py builds the slim image from this file and asks the running container for a verdict.
# The model folder as the chosen install serves it: the slim install (LiteRT only) keeps the .tflite files
# its parity report vouches for (int8 and float32) with the report and the metadata, not the SavedModel nor
# the other exports.
FROM python:3.11-slim AS model
ARG REQUIREMENTS=requirements.txt
COPY model /model
RUN if [ "${REQUIREMENTS}" = "requirements-slim.txt" ]; then \
      cd /model && rm -rf saved_model.pb fingerprint.pb variables model.onnx onnx_parity.json model_float16.tflite; \
    fi

FROM python:3.11-slim

# The pinned requirements to install: requirements.txt (the default: TensorFlow and ONNX Runtime, serves any exported
# model) or requirements-slim.txt (LiteRT only: serves the shipped model's verified .tflite).
ARG REQUIREMENTS=requirements.txt

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PORT=5000 FRACTURE_MODEL_DIR=/app/model TF_CPP_MIN_LOG_LEVEL=2

RUN useradd --create-home --uid 10001 clinic
WORKDIR /app

# Pinned requirements first, so code changes do not reinstall them.
COPY ${REQUIREMENTS} ./
RUN pip install -r "${REQUIREMENTS}"

COPY pyproject.toml README.md LICENSE app.py gunicorn.conf.py ./
COPY fracture_web ./fracture_web
COPY templates ./templates
COPY static ./static
COPY --from=model /model ./model
RUN pip install --no-deps -e . && chown -R root:root /app && chmod -R a+rX /app \
    && mkdir /app/instance && chown clinic /app/instance
# instance/ holds the generated secret key and the readers' reads; mount a volume there (or set
# FRACTURE_SECRET_KEY) to keep them across container re-creation. The DICOM node queues in
# /home/clinic/.fracture-web (FRACTURE_DICOM_QUEUE_DIR): mount a volume there too.

USER clinic
# The web app's port; the DICOM node listens on 11112 (FRACTURE_DICOM_PORT).
EXPOSE 5000 11112
# For the web app; the node and the workers have no HTTP port to ask (docker run --no-healthcheck).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
