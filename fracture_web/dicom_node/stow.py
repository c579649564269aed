"""STOW-RS to a DICOMweb server (``FRACTURE_DICOMWEB_URL``), with the node's retries (dicomweb-client).

Each attempt posts all the datasets in one multipart request to ``<url>/studies``. It has succeeded
only when the server answered 200 or 202 with a DICOM JSON body (``application/dicom+json``, its
parameters such as ``charset`` ignored) whose Referenced SOP Sequence lists every SOP Instance UID
sent. Anything else has failed: no connection, a timeout, an HTTP error such as 401 or 409, a redirect
(never followed: an auth proxy's way to its login page), a login page or other non-DICOM body, an
empty or unreadable body, an instance listed as failed or not listed at all. Credentials are HTTP
Basic (user and password) or a bearer token; they are never logged.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from urllib.parse import urlsplit

import requests
from dicomweb_client.api import DICOMwebClient
from dicomweb_client.session_utils import create_session, create_session_from_user_pass
from pydicom import Dataset

from .config import NodeConfig
from .sender import Failure, Sender

#: Seconds to connect, and to wait for each part of the answer.
TIMEOUT = (10, 60)
#: HTTP client errors that say nothing against the instances themselves (sign-in, timeouts, rate limits).
NOT_A_REFUSAL = {401, 403, 407, 408, 429}
#: Media types of a STOW-RS answer the node can read (compared without their parameters).
DICOM_JSON = {"application/dicom+json", "application/json"}


class StowSender(Sender):
    """Stores results on a DICOMweb server by STOW-RS."""

    kind = "stow_rs"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        web = config.dicomweb
        session = create_session_from_user_pass(web.user, web.password) if web.user else create_session()
        if web.token:
            session.headers["Authorization"] = f"Bearer {web.token}"
        session.max_redirects = 0  # a redirect is answered as a failure, never followed
        self._answers = threading.local()
        session.hooks["response"].append(self._keep_answer)
        self.client = DICOMwebClient(web.url, session=session, timeout=TIMEOUT)
        self.client.set_http_retry_params(retry=False)  # the retries are the node's, as for C-STORE

    def _keep_answer(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        """Keep the server's answer for :meth:`send_once` (dicomweb-client reads only an exact media type)."""
        self._answers.last = response

    def send_once(self, datasets: Sequence[Dataset]) -> Failure | None:
        self._answers.last = None
        try:
            self.client.store_instances(list(datasets))
        except requests.TooManyRedirects:
            return Failure("STOW-RS answered with a redirect (not followed)", refused=True)
        except requests.ReadTimeout as err:  # reached, but no answer to these instances
            return Failure(f"STOW-RS failed ({err})", broke_off=True)
        except requests.JSONDecodeError:  # a RequestException, but the server did answer
            return Failure("STOW-RS answer unreadable (not JSON)", refused=True)
        except requests.RequestException as err:
            status = getattr(err.response, "status_code", None) or 0
            return Failure(f"STOW-RS failed ({err})", 400 <= status < 500 and status not in NOT_A_REFUSAL)
        except ValueError as err:  # an answer dicomweb-client cannot read
            return Failure(f"STOW-RS answer unreadable ({err})", refused=True)
        return judge_answer(self._answers.last, datasets)

    @property
    def destination(self) -> str:
        parts = urlsplit(self.config.dicomweb.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def judge_answer(response: requests.Response | None, datasets: Sequence[Dataset]) -> Failure | None:
    """None when the answer says every dataset was stored: 200 or 202, DICOM JSON, each SOP Instance
    UID in its Referenced SOP Sequence; else the failure, held against the results (the server answered)."""
    if response is None or response.status_code not in (200, 202):
        status = "no answer" if response is None else f"HTTP {response.status_code}"
        return Failure(f"STOW-RS answer not a store ({status})", refused=True)
    media = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media not in DICOM_JSON:
        return Failure(f"STOW-RS answer not DICOM JSON ({media or 'no media type'}, {len(response.content)} bytes)",
                       refused=True)
    try:
        answer = Dataset.from_json(response.json())
        stored = {str(item.ReferencedSOPInstanceUID) for item in answer.get("ReferencedSOPSequence") or []}
    except (ValueError, TypeError, AttributeError) as err:
        return Failure(f"STOW-RS answer unreadable ({type(err).__name__})", refused=True)
    missing = sum(str(ds.SOPInstanceUID) not in stored for ds in datasets)
    failed = len(answer.get("FailedSOPSequence") or [])
    if missing or failed:
        return Failure(f"{max(missing, failed)} of {len(datasets)} instances not stored", refused=True)
    return None
