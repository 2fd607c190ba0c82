"""What an expert's owner does with it besides uploading: retire it, retry a failed one."""

from __future__ import annotations

from django.db import transaction

from ..models import Expert
from .validation import enqueue_validation


def retire(expert: Expert) -> bool:
    """Retire the expert: it leaves the mixture's next composition. False when it was
    retired already (a second request changes nothing)."""
    return bool(
        Expert.objects.filter(pk=expert.pk)
        .exclude(status=Expert.Status.RETIRED)
        .update(status=Expert.Status.RETIRED)
    )


def may_retry(user, expert: Expert) -> bool:
    """Who may ask for a failed expert's validation again: its owner and its mixture's
    maintainers."""
    return user.is_authenticated and (
        expert.owner_id == user.pk or expert.mixture.is_maintainer(user)
    )


def retry(expert: Expert):
    """Validate a failed expert again (a worker died or the infrastructure failed while it
    was validated; the file itself was never judged): it is uploaded again and its new
    validation job commits with that change. None when it is not failed (any more)."""
    with transaction.atomic():
        changed = Expert.objects.filter(pk=expert.pk, status=Expert.Status.FAILED).update(
            status=Expert.Status.UPLOADED
        )
        if not changed:
            return None
        return enqueue_validation(expert)
