"""Every upload endpoint (expert files, domain data; site forms and the API) reads its
body through here: a body the upload handler stopped at the hub's cap (`hub.uploads`)
is answered 413 with the same message everywhere, never as a missing file."""

from __future__ import annotations

from rest_framework.exceptions import APIException

from .services.uploads import UploadError, stopped_body


class UploadFailed(APIException):
    """An UploadError as the API's answer (status, `detail`, `code`, Retry-After)."""

    def __init__(self, error: UploadError):
        self.status_code = error.status
        self.wait = error.retry_after  # DRF sends it as Retry-After
        super().__init__(detail={"detail": error.message, "code": error.code})


def bound_form(request, form_class, **kwargs):
    """(the form bound to the request's POST and files, the refusal of a body stopped at
    the cap or None). A stopped body leaves the form invalid with the refusal on its file
    field; the page answers with `refusal.status`."""
    files = request.FILES  # parses the body; the upload handler flags an oversize file
    refusal = stopped_body(request)
    if refusal is None:
        return form_class(request.POST, files, **kwargs), None
    form = form_class(request.POST, **kwargs)
    form.full_clean()
    form.errors.pop("file", None)  # not "required": it was sent, and stopped
    form.add_error("file", refusal.message)
    return form, refusal


def api_data(request):
    """The parsed body of an API upload; UploadFailed (413) when it was stopped at the cap."""
    data = request.data  # parses the body; the upload handler flags an oversize file
    refusal = stopped_body(request._request)
    if refusal is not None:
        raise UploadFailed(refusal)
    return data
