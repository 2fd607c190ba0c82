"""What an expert's owner does with it besides uploading."""

from __future__ import annotations

from ..models import Expert


def retire(expert: Expert) -> bool:
    """Retire the expert: it leaves the mixture's next composition. False when it was
    retired already (a second request changes nothing)."""
    return bool(
        Expert.objects.filter(pk=expert.pk)
        .exclude(status=Expert.Status.RETIRED)
        .update(status=Expert.Status.RETIRED)
    )
