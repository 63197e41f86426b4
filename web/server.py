"""`shielding serve`: the web service under uvicorn, with its logs as the service's JSON lines."""

from __future__ import annotations

import uvicorn

from shielding import metrics
from shielding.log import configure_logging
from shielding.settings import Settings
from web.app import create_app


def serve(settings: Settings, *, host: str | None = None, port: int | None = None) -> None:
    configure_logging(settings.log_level or "INFO")
    # Prometheus metrics on a port of their own (not the pages'): before the app connects to Temporal.
    metrics.start_runtime(settings.metrics_address, process="web")
    uvicorn.run(
        create_app(settings),
        host=host or settings.web_host,
        port=port or settings.web_port,
        # uvicorn's own access log would print every URL; ours logs ids only.
        access_log=False,
        log_config=None,
        proxy_headers=False,
        # The C event loop and HTTP parser: a signed-in request's fixed cost about halves.
        loop="uvloop",
        http="httptools",
    )
