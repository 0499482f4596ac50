"""Flower, with its Prometheus ``/metrics`` behind the same basic auth as its pages and API.

Flower 2 answers ``/metrics`` to anyone; ``python -m skinsense.flower_server -A worker.celery_app flower ...``
takes the same arguments as ``celery ... flower`` and runs it with that one page protected. ``/healthcheck``
stays open (it says "OK" and nothing else) for compose's healthcheck.
"""

from __future__ import annotations

import sys
from typing import Any

import tornado.web


def protect_metrics() -> None:
    from flower.views import monitor  # type: ignore[import-untyped]  # Flower ships no type hints

    get: Any = monitor.Metrics.get
    if not getattr(get, "_skinsense_protected", False):
        protected: Any = tornado.web.authenticated(get)
        protected._skinsense_protected = True
        monitor.Metrics.get = protected


def main() -> None:
    protect_metrics()
    from celery.__main__ import main as celery_main

    sys.argv = ["celery", *sys.argv[1:]]
    celery_main()


if __name__ == "__main__":
    main()
