"""Every way a request is refused, in one table: the HTTP status, the message the person who sent it
reads, and the reason it is counted under in ``fracture_refusals_total``.

No Flask: ``metrics`` takes its reasons from here, and the web layer's handlers (``web.errors``) turn
a raised domain exception, a ``Refused`` or an HTTP error into the page or the JSON error by its row.
A row whose message is ``None`` answers with the exception's own words (the image checks say what is
wrong with each file; a study's unreadable view is listed with the same words).
"""
from __future__ import annotations

from dataclasses import dataclass

from .inference import UnknownOperatingPointError
from .pixels import InvalidImageError
from .study import EmptyStudyError, MixedPatientsError


@dataclass(frozen=True)
class Refusal:
    """One kind of refused request.

    ``label`` is its reason in ``fracture_refusals_total`` (``None``: an error answer that is no
    refusal, such as a missing page, and is not counted); ``message`` is a ``str.format`` template
    filled by the one who refuses, or ``None`` for the exception's own text; ``headers`` go with
    the answer; ``body_unread`` marks a refusal made before the request body was read to its end,
    after which the connection is closed rather than drained (``web.uploads``).
    """

    label: str | None
    status: int
    message: str | None
    headers: tuple[tuple[str, str], ...] = ()
    body_unread: bool = False

    def text(self, error: BaseException | None = None, **fields: object) -> str:
        """The message for this refusal: the template filled with ``fields``, or ``error``'s text."""
        return str(error) if self.message is None else self.message.format(**fields)


class Refused(Exception):
    """A request the web layer refuses by a row of the table; ``fields`` fill the row's message."""

    def __init__(self, refusal: Refusal, **fields: object) -> None:
        super().__init__(refusal.text(**fields))
        self.refusal = refusal


# The upload itself: what the image checks or the model refused (their own words).
UNREADABLE = Refusal("unreadable", 400, None)
BAD_OPERATING_POINT = Refusal("bad_operating_point", 400, None)
# The request's file fields.
NO_FILE = Refusal("no_file", 400, "No file was uploaded: send the image in the form field 'file'.")
WRONG_FIELD = Refusal("no_file", 400, "Send the images in the form field 'file': a file came in a field named "
                                      "{field!r}, and nothing is read from other fields.")
MALFORMED_FORM = Refusal("bad_request", 400, "The upload form could not be read: it is malformed or was cut off "
                                             "before its end. Please send it again.")
BAD_HEATMAP = Refusal("bad_request", 400, "'heatmap' takes 1 or png (the overlay as PNG), jpeg, or 0 (none); "
                                          "not {value!r}.")
EMPTY_BODY = Refusal("no_file", 400, "The request body is empty: send the image's bytes, or use the form field 'file'.")
ONE_AT_A_TIME = Refusal("too_many_files", 400,
                        "Upload one image at a time here; send the views of one study to /api/v1/studies.")
STUDY_TOO_LARGE = Refusal("too_many_files", 400, "Too many files: a study takes at most {limit} images, "
                                                 "and {sent} were sent.")
# Who may analyse (``web.access``): refused before the body is read.
TOKEN_NEEDED = Refusal("unauthorised", 401, "This API needs the header 'Authorization: Bearer <token>'.",
                       headers=(("WWW-Authenticate", "Bearer"),), body_unread=True)
SIGN_IN_FIRST = Refusal("unauthorised", 401,
                        "Sign in with this site's access token first, then upload the image again.", body_unread=True)
WRONG_TOKEN = Refusal("unauthorised", 401, "That is not this site's access token.")
# The form's CSRF token (``web.csrf``).
EXPIRED_FORM = Refusal("expired_form", 400, "This form has expired or did not come from this app's page. "
                                            "Reload the page and upload the image again.")
# HTTP errors, by status (raised by ``abort`` or by Werkzeug).
BAD_REQUEST = Refusal("bad_request", 400, "The request could not be understood.")
CROSS_SITE = Refusal("cross_site", 403, "Requests from other web sites are refused.", body_unread=True)
NOT_FOUND = Refusal(None, 404, "There is no page at this address.")
NOT_ALLOWED = Refusal(None, 405, "This address does not accept that kind of request.")
UPLOAD_STALLED = Refusal("upload_stalled", 408, "The upload was too slow, stalled or was cut off before the whole "
                                                "file arrived; please try again.", body_unread=True)
TOO_LARGE = Refusal("too_large", 413, "The file is too large to upload (the limit is {limit_mb} MB, "
                                      "for all the files of one upload together).", body_unread=True)
NO_MODEL = Refusal("no_model", 503, "The model is not loaded yet; try again in a moment.")
# A reader's read (``web.reads``) and the site page (``web.site``). A malformed read is one of the "other
# 400s"; an unknown id is a missing page, and an unreachable database the site's trouble, not the
# sender's: neither is counted as a refusal (the database's is logged).
READ_MALFORMED = Refusal("bad_request", 400, "The read could not be understood: {problem}")
UNKNOWN_ANALYSIS = Refusal(None, 404, "No analysis is stored under the id {analysis_id!r}: send the request_id of "
                                      "an answer this site gave.")
READS_UNAVAILABLE = Refusal(None, 503, "The read could not be saved: this site's database cannot be reached just now. "
                                       "The analysis itself is not affected; please send the read again later.")

#: Every row, in the order above.
TABLE = (UNREADABLE, BAD_OPERATING_POINT, NO_FILE, WRONG_FIELD, MALFORMED_FORM, BAD_HEATMAP, EMPTY_BODY, ONE_AT_A_TIME, STUDY_TOO_LARGE,
         TOKEN_NEEDED, SIGN_IN_FIRST, WRONG_TOKEN, EXPIRED_FORM, BAD_REQUEST, CROSS_SITE, NOT_FOUND, NOT_ALLOWED,
         UPLOAD_STALLED, TOO_LARGE, NO_MODEL, READ_MALFORMED, UNKNOWN_ANALYSIS, READS_UNAVAILABLE)
#: The domain exceptions a request may raise, and their rows (a subclass, such as the model's
#: ``ModelOutputError``, answers as its parent).
BY_EXCEPTION: dict[type[Exception], Refusal] = {
    InvalidImageError: UNREADABLE, EmptyStudyError: UNREADABLE, MixedPatientsError: UNREADABLE,
    UnknownOperatingPointError: BAD_OPERATING_POINT}
#: HTTP errors' rows by status; another status answers with its own description, uncounted.
BY_STATUS = {row.status: row for row in (BAD_REQUEST, CROSS_SITE, NOT_FOUND, NOT_ALLOWED, UPLOAD_STALLED, TOO_LARGE,
                                         NO_MODEL)}
#: The reasons ``fracture_refusals_total`` counts under: a fixed set, so the metric has a handful of series.
LABELS = tuple(dict.fromkeys(row.label for row in TABLE if row.label is not None))


def for_exception(error: Exception) -> Refusal:
    """The row of a domain exception in ``BY_EXCEPTION`` (its own class or the nearest parent)."""
    return next(BY_EXCEPTION[kind] for kind in type(error).__mro__ if kind in BY_EXCEPTION)
