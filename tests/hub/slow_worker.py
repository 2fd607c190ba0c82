"""A Celery worker of the hub whose validations wait SLOW_VALIDATION_SECONDS after claiming
their job, so that a test can kill it in the middle of one however fast the tiny models
validate (`Worker(..., slow_validation=...)`). Run as `python -m tests.hub.slow_worker
<celery worker arguments>`."""

import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
django.setup()

from experts.services import validation  # noqa: E402

_real = validation.run_validation


def _slow(expert, report_progress):
    report_progress(1, "held back by the test")
    time.sleep(float(os.environ["SLOW_VALIDATION_SECONDS"]))
    return _real(expert, report_progress)


validation.run_validation = _slow  # the pool's children are forked with it

if __name__ == "__main__":
    from celery.bin.celery import main

    sys.argv[0] = "celery"
    sys.exit(main())
