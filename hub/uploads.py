"""An upload handler that enforces the size cap while the body streams.

It sits before Django's temporary-file handler. Once a file passes the cap, or
as soon as a file starts in a body whose declared length is already over it,
it stops the upload (the rest of the body is read and discarded, never
buffered or stored) and marks the request, so the view answers 413.

`StopUpload` is raised only where Django's parser catches it (when a file
starts or a chunk arrives): raised from `handle_raw_input` it escapes as a 500.
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload


class CappedUploadHandler(FileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.cap = settings.MOECOLLAB_MAX_UPLOAD_BYTES
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.request.upload_too_large = False
        self.declared_too_large = bool(content_length and content_length > self.cap + 64 * 1024)
        return None

    def new_file(self, *args, **kwargs):
        self.received = 0
        if self.declared_too_large:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=False)
        return super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.cap:
            self.request.upload_too_large = True
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size):
        return None
