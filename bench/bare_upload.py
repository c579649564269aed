"""The floor of an upload through gunicorn: a WSGI app that only receives the body and says how long it was.

``bench/benchmark.py`` serves it with the app's own ``gunicorn.conf.py`` and posts each full-size
case to it as to the app: what that takes is the transport alone (client, loopback, gunicorn), which
no work inside the app can save. Not a part of the product.
"""
from __future__ import annotations


def app(environ, start_response):
    """Read the whole body in one call; answer with its length."""
    body = environ["wsgi.input"].read()
    answer = str(len(body)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(answer)))])
    return [answer]
