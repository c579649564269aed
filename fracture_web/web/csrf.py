"""A CSRF token on the upload form, signed with a secret key that is never in the repo.

The key comes from ``FRACTURE_SECRET_KEY`` or, when that is unset, from a random key
generated once per install in the instance folder and shared by every worker (a form
served by one gunicorn worker must be accepted by another). The JSON API is exempt: it
carries no cookie, and cross-site browser requests to it are refused by ``security``.
"""
from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFError, CSRFProtect

from .. import refusals
from . import errors

csrf = CSRFProtect()


def init_app(app: Flask) -> None:
    """Set the secret key, protect every form POST, exempt the API."""
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = instance_secret(Path(app.instance_path) / "secret_key")
    # A page may stay open all day at a reporting station: the token lives as long as the
    # browser session. The Referer check is off because our Referrer-Policy sends none; the
    # Origin/Sec-Fetch-Site check in ``security`` covers what it would.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    csrf.init_app(app)
    csrf.exempt("fracture_web.web.views.predict_api")
    csrf.exempt("fracture_web.web.views.studies_api")
    csrf.exempt("fracture_web.web.reads.read_api")
    app.register_error_handler(CSRFError, refuse_form)


def refuse_form(err: CSRFError):
    """The upload page again, with a message saying what to do."""
    return errors.refuse(refusals.EXPIRED_FORM)


def instance_secret(path: Path) -> str:
    """The key stored at ``path``, created (random, mode 0600) if there is none yet.

    Safe when several workers start at once: the first to link its file wins and the
    others read that one.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")  # mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        os.unlink(temp)
    return path.read_text().strip()
