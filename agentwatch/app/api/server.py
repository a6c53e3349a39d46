"""Run the HTTP API with uvicorn: one process per home, holding the home's serve lock."""

from __future__ import annotations

import contextlib
import logging
import socket
from pathlib import Path

import uvicorn

from agentwatch.app.alerting import AlertLoop
from agentwatch.app.api.app import ApiSettings, create_app
from agentwatch.app.api.metrics import registry_of, serve_metrics_port
from agentwatch.app.config import config_for
from agentwatch.app.crm_polling import CrmPolling
from agentwatch.app.logs import LogFormat, configure_logging, uvicorn_log_config
from agentwatch.app.scheduler import CheckScheduler
from agentwatch.core.errors import ConfigError, StoreError
from agentwatch.core.home import Home
from agentwatch.core.locks import acquire_serve_lock, release_serve_lock

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 30  # in-flight requests get this long to finish before the final WAL flush


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError naming the address and what to do."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve host {host!r}: {exc.strerror}; use an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; is another server using that port? pick another "
            "with --port"
        ) from None
    sock.set_inheritable(True)
    return sock


def serve(home: Home, host: str = "127.0.0.1", port: int = 8000, settings: ApiSettings | None = None,
          check_every_s: float | None = 60.0, config_path: Path | None = None, metrics_port: int | None = None,
          log_format: LogFormat = LogFormat.text) -> None:
    """Serve the API of `home` until SIGINT or SIGTERM; then flush the WAL and return.

    Fails at once (StoreError) when another server holds the home, and (ConfigError) when the
    port cannot be bound. It answers at once; while it ingests the WAL a crash left behind, /healthz says
    `starting` and event routes answer 503 with Retry-After. Bounds come from the config's `limits:`.
    With `check_every_s`, the checks run on that schedule in a background thread. With `metrics_port`, /metrics is
    also served without a key on 127.0.0.1 at that port. Log lines are `log_format` (text or JSON lines).
    """
    configure_logging(log_format)
    acquire_serve_lock(home)
    try:
        sock = _listen(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        limits = config_for(home, config_path).limits  # a broken config fails here, before serving
        settings = (settings or ApiSettings()).model_copy(update={"config_path": config_path, "limits": limits,
                                                                  "check_every_s": check_every_s or None})
        app = create_app(home, settings)
        config = uvicorn.Config(
            app,
            lifespan="on",
            log_level="info",
            log_config=uvicorn_log_config(log_format),
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        )
        server = uvicorn.Server(config)
        log.info("agentwatch API for %s on http://%s:%d (docs at /docs)", home.root, bound_host, bound_port)
        stop_metrics = None
        if metrics_port:
            try:
                stop_metrics = serve_metrics_port(registry_of(app), metrics_port)
            except ConfigError:
                sock.close()
                raise
        scheduler = None
        if check_every_s:
            scheduler = CheckScheduler(home, check_every_s, config_path)
            scheduler.start()
            log.info("checks run every %g s", check_every_s)

        alert_loop = AlertLoop(home, config_path)  # also delivers what an earlier process left in the outbox
        alert_loop.start()
        crm_polling = CrmPolling(home, config_path)  # the crm: section's schema pollers, when due (docs/crm.md)
        crm_polling.start()
        try:
            with contextlib.suppress(KeyboardInterrupt):
                server.run(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits when the app's startup fails; its log says why
            raise StoreError(
                f"the API server for {home.root} failed to start (exit {exc.code}); the reason is logged above"
            ) from None
        finally:
            if scheduler:
                scheduler.stop()
            alert_loop.stop()
            crm_polling.stop()
            if stop_metrics:
                stop_metrics()
            sock.close()
    finally:
        release_serve_lock(home)
