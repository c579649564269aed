"""The DICOM node's results in the same database as the web app's analyses, so that a reader's
answer can be attached to them: each analysed radiograph is kept under the SOP Instance UID of the
Secondary Capture the node sends back, which is what a PACS-side reader sees and sends with the read.

Only when ``DATABASE_URL`` is set (the node has no instance folder of the web app's to share); a
database that cannot be reached costs the result nothing: it is sent, and a warning logged."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import lru_cache

from ..inference import Prediction
from .store import ReadStore, StoreUnavailableError, database_url

log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def _store(url: str) -> ReadStore:
    """One store per database for the whole process (the node's threads, or a worker's tasks)."""
    return ReadStore.open(database_url(url, "."))


def keep_result(url: str | None, result_uid: str, prediction: Prediction, context: Mapping[str, str]) -> bool:
    """Keep the analysis behind one result under its UID; False when there is no database or it did not answer."""
    if url is None:
        return False
    try:
        _store(url).add_analysis(result_uid, prediction, context, source="dicom")
    except StoreUnavailableError as err:
        log.warning("a result was sent but its analysis not kept for reads: %s", err)
        return False
    return True
