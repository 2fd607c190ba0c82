"""What the API's serializers share: a service check as a validation error, the
not-blank validator, absolute addresses."""

from __future__ import annotations

from django.core.validators import RegexValidator
from rest_framework import serializers


def _checked(check, value, field: str | None = None):
    """A service check's ValueError as the serializer's validation error (under `field`
    when given, for checks made in `validate()`)."""
    try:
        return check(value)
    except ValueError as exc:
        raise serializers.ValidationError({field: str(exc)} if field else str(exc)) from None


NOT_BLANK = RegexValidator(r"\S", "may not be blank")


def _absolute(serializer, url: str) -> str:
    request = serializer.context.get("request")
    return request.build_absolute_uri(url) if request else url
