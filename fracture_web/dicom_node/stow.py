"""STOW-RS to a DICOMweb server (``FRACTURE_DICOMWEB_URL``), with the node's retries (dicomweb-client).

Each attempt posts all the datasets in one multipart request to ``<url>/studies``; it has failed
when the request fails (no connection, an HTTP error such as 401 or 409, a timeout) or when the
server's answer lists any instance as not stored (Failed SOP Sequence). Credentials are HTTP Basic
(user and password) or a bearer token; they are never logged.
"""
from __future__ import annotations

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


class StowSender(Sender):
    """Stores results on a DICOMweb server by STOW-RS."""

    kind = "stow_rs"

    def __init__(self, config: NodeConfig) -> None:
        super().__init__(config)
        web = config.dicomweb
        session = create_session_from_user_pass(web.user, web.password) if web.user else create_session()
        if web.token:
            session.headers["Authorization"] = f"Bearer {web.token}"
        self.client = DICOMwebClient(web.url, session=session, timeout=TIMEOUT)
        self.client.set_http_retry_params(retry=False)  # the retries are the node's, as for C-STORE

    def send_once(self, datasets: Sequence[Dataset]) -> Failure | None:
        try:
            answer = self.client.store_instances(list(datasets))
        except requests.ReadTimeout as err:  # reached, but no answer to these instances
            return Failure(f"STOW-RS failed ({err})", broke_off=True)
        except requests.RequestException as err:
            status = getattr(err.response, "status_code", None) or 0
            return Failure(f"STOW-RS failed ({err})", 400 <= status < 500 and status not in NOT_A_REFUSAL)
        except ValueError as err:  # an answer dicomweb-client cannot read
            return Failure(f"STOW-RS answer unreadable ({err})")
        failed = answer.get("FailedSOPSequence") or []
        return Failure(f"{len(failed)} of {len(datasets)} instances not stored", True) if failed else None

    @property
    def destination(self) -> str:
        parts = urlsplit(self.config.dicomweb.url)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"
