"""API pagination (kept apart from the views: DRF imports it while loading its settings)."""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.pagination import PageNumberPagination


class StrictPageNumberPagination(PageNumberPagination):
    """Page numbers as the schema states them: one positive integer, or none at all.
    DRF would read `?page=` (empty) as page 1; here it is a 404 like any invalid page."""

    def get_page_number(self, request, paginator):
        pages = request.query_params.getlist(self.page_query_param)
        if pages and (len(pages) != 1 or not pages[0].isascii() or not pages[0].isdigit()):
            raise NotFound("Invalid page.")
        return super().get_page_number(request, paginator)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters
