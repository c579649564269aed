"""Who may analyse: with ``API_TOKEN`` set, every route that analyses an upload, records a read or
shows the site's reads needs the token.

The API wants ``Authorization: Bearer <token>``. The page asks for the token once, on a small
sign-in form (no JavaScript needed; the form carries its CSRF token like the upload form), and
remembers it in the signed session cookie as a fingerprint of the token, so that a new token signs
everyone out. A request without it is refused before its body is read (this hook runs ahead of
``uploads``), and its connection is closed rather than read to its end. Tokens are compared in
constant time. ``/healthz``, the static files and ``/metrics`` (its own setting, ``METRICS``) stay open.
"""
from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Flask, current_app, redirect, request, session, url_for

from .. import refusals
from ..refusals import Refused

bp = Blueprint("access", __name__)

#: Views that analyse, and those that record or show the readers' answers: the page's form and the site
#: page take the signed-in cookie or the header, the API the header only (it is exempt from the CSRF
#: check, so a cookie must not open it).
PAGE = frozenset({"fracture.predict_page", "reads.read_form", "site.site_page", "site.reads_csv"})
API = frozenset({"fracture.predict_api", "fracture.studies_api", "reads.read_api", "reads.analysis_api"})
GUARDED = PAGE | API
#: Largest sign-in form accepted, in bytes (a token and a CSRF token).
SIGN_IN_LIMIT = 4096


def init_app(app: Flask) -> None:
    """Guard the analysing views and serve the sign-in form's routes."""
    app.before_request(require_token)
    app.context_processor(sign_in_state)
    app.register_blueprint(bp)


def _token() -> str | None:
    return current_app.config["API_TOKEN"]


def _fingerprint(token: str) -> str:
    """What the session keeps of the token: enough to check it, not the token itself."""
    return hmac.new(token.encode(), b"fracture-web sign-in", hashlib.sha256).hexdigest()


def _bearer_ok(token: str) -> bool:
    sent = request.headers.get("Authorization", "")
    return hmac.compare_digest(sent.encode(), f"Bearer {token}".encode())


def sign_in_state() -> dict[str, bool]:
    """For the templates: whether the page must ask for the token, and whether this browser gave it."""
    needs = needs_sign_in()
    return {"needs_sign_in": needs, "signed_in": _token() is not None and not needs}


def needs_sign_in() -> bool:
    """Whether the page must ask for the token (one is set and this browser has not given it)."""
    token = _token()
    return token is not None and not hmac.compare_digest(str(session.get("access", "")), _fingerprint(token))


def require_token() -> None:
    """401 for an analysing request without the token, before its body is read."""
    if request.endpoint == "access.sign_in":
        request.max_content_length = SIGN_IN_LIMIT
    token = _token()
    if token is None or request.endpoint not in GUARDED or _bearer_ok(token):
        return None
    if request.endpoint in PAGE and not needs_sign_in():
        return None
    raise Refused(refusals.TOKEN_NEEDED if request.endpoint in API else refusals.SIGN_IN_FIRST)


@bp.post("/sign-in")
def sign_in():
    """Check the token from the sign-in form; remember it in the session and go back to the page."""
    token = _token()
    sent = request.form.get("token", "")
    if token is None:
        return redirect(url_for("fracture.index"), 303)
    if not hmac.compare_digest(sent.encode(), token.encode()):
        raise Refused(refusals.WRONG_TOKEN)
    session["access"] = _fingerprint(token)
    return redirect(url_for("fracture.index"), 303)


@bp.post("/sign-out")
def sign_out():
    """Forget the token in this browser."""
    session.pop("access", None)
    return redirect(url_for("fracture.index"), 303)
