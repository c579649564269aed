"""Security headers on every response; the page loads nothing from outside the app, and no answer
but a static file is stored in a cache."""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "form-action 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'")


def init_app(app: Flask) -> None:
    """Register the cross-site check and the header hook."""
    app.before_request(refuse_cross_site_posts)
    app.after_request(add_security_headers)


def refuse_cross_site_posts() -> None:
    """403 for a POST that a browser sent from another site (cross-site request forgery).

    Browsers label every request with ``Sec-Fetch-Site`` and cross-origin POSTs with
    ``Origin``, and page scripts cannot forge either. Scripts and curl send neither, so the
    API stays usable without a token or cookie. Behind a reverse proxy, forward ``Host``.
    """
    if request.method != "POST":
        return
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        if fetch_site not in ("same-origin", "none"):
            abort(403)
        return
    origin = request.headers.get("Origin")
    if origin is not None and _host_of(origin) != request.host:
        abort(403)


def _host_of(origin: str) -> str | None:
    """The host (and port) an ``Origin`` header names; None for one that is not a URL."""
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[::1": an unclosed IPv6 address
        return None


def add_security_headers(response: Response) -> Response:
    """CSP without inline script, no MIME sniffing, no framing, no referrer leaks; and nothing but
    the static files kept in any cache (a result page or answer holds a patient's verdict and image)."""
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response
