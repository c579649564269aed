# Fracture detection assistant behind gunicorn. Build: docker build -t fracture-web .
# Run: docker run -p 5000:5000 fracture-web   (then open http://localhost:5000)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    PORT=5000 FRACTURE_MODEL_DIR=/app/model TF_CPP_MIN_LOG_LEVEL=2

RUN useradd --create-home --uid 10001 clinic
WORKDIR /app

# Pinned requirements first, so code changes do not reinstall TensorFlow.
COPY requirements.txt ./
RUN pip install -r requirements.txt

COPY pyproject.toml README.md LICENSE app.py gunicorn.conf.py ./
COPY fracture_web ./fracture_web
COPY templates ./templates
COPY static ./static
COPY model ./model
RUN pip install --no-deps -e . && chown -R root:root /app && chmod -R a+rX /app \
    && mkdir /app/instance && chown clinic /app/instance
# instance/ holds the generated secret key; mount a volume there (or set FRACTURE_SECRET_KEY)
# to keep it across container re-creation.

USER clinic
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"
CMD ["gunicorn", "-c", "gunicorn.conf.py"]
