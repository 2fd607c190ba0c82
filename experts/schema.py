"""The OpenAPI schema says what the API really answers, errors included.

drf-spectacular documents the success response of each operation; the hub's
schema class adds the error answers every operation can give (a bad token,
a throttle, a missing object or page, a refused body), each with the body
DRF sends, so that clients and schema-driven tests see the whole contract.
Operation-specific refusals (409, 413) are declared on the views themselves.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="what is wrong, for a person")
    code = serializers.CharField(required=False, help_text="what is wrong, for a program")


VALIDATION_ERROR = {
    "type": "object",
    "description": "each field that was refused, with its messages",
    "additionalProperties": {},
}
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


class HubAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, (body, description) in self._errors().items():
            if code not in responses:
                response = self._get_response_for_code(body, code, direction=direction)
                response["description"] = description
                responses[code] = response
        return responses

    def _errors(self) -> dict[str, tuple[object, str]]:
        errors = {
            "401": (ErrorSerializer, "the token is unknown or revoked, or one is needed"),
            "429": (ErrorSerializer, "too many requests; Retry-After says when to try again"),
        }
        if self.method in UNSAFE:
            errors["400"] = (VALIDATION_ERROR, "the request was refused; the body says why")
            errors["403"] = (ErrorSerializer, "not allowed (permission, CSRF or quota)")
        elif getattr(self.view, "checks_query", False):  # a view that refuses a bad filter
            errors["400"] = (VALIDATION_ERROR, "a query parameter was refused; the body says why")
        if "{" in self.path or self._is_list_view() or self.method in UNSAFE:
            errors["404"] = (ErrorSerializer, "no such object, or no such page of results")
        return errors
