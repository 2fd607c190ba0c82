"""gunicorn's settings for the hub's web processes, from the environment:

    .venv/bin/gunicorn hub.wsgi -c hub/gunicorn.conf.py

WEB_BIND (default 127.0.0.1:8000), WEB_WORKERS (default 2 per CPU core, at most 8),
WEB_TIMEOUT (seconds a request may take, default 60), WEB_FORWARDED_ALLOW_IPS (the
proxy's addresses, default 127.0.0.1). Uploads stream to temporary files, so a sync
worker holds little memory per request. Logs go to stderr; with LOG_FORMAT=json every
line, access lines included, is one JSON object.
"""

import json
import os

bind = os.environ.get("WEB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", min(8, 2 * (os.cpu_count() or 1))))
timeout = int(os.environ.get("WEB_TIMEOUT", "60"))
graceful_timeout = 30
max_requests = 2000  # a worker is replaced now and then, so no leak grows for ever
max_requests_jitter = 200
forwarded_allow_ips = os.environ.get("WEB_FORWARDED_ALLOW_IPS", "127.0.0.1")
control_socket_disable = True  # several servers may share a machine; none is needed
accesslog = "-"
errorlog = "-"

if os.environ.get("LOG_FORMAT") == "json":
    access_log_format = json.dumps(
        {
            "time": "%(t)s",
            "logger": "gunicorn.access",
            "process": "%(p)s",
            "method": "%(m)s",
            "path": "%(U)s",
            "status": "%(s)s",
            "bytes": "%(B)s",
            "ms": "%(M)s",
            "agent": "%(a)s",
        }
    )
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "hub.logs.JsonFormatter"},
            "as_is": {"format": "%(message)s"},  # access lines are JSON already
        },
        "handlers": {
            "error": {"class": "logging.StreamHandler", "formatter": "json"},
            "access": {"class": "logging.StreamHandler", "formatter": "as_is"},
        },
        "root": {"handlers": ["error"], "level": "INFO"},
        "loggers": {
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }
else:
    access_log_format = '%(h)s "%(r)s" %(s)s %(B)s %(M)sms pid=%(p)s'
