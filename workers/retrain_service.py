"""Cloud Run service: queue retrains on Pub/Sub push, Cloud Scheduler and Cloud Tasks requests.

    python workers/retrain_service.py

Settings (README.md, "Settings"): PORT (set by Cloud Run); DATABASE_URL (the login role must be allowed to
`set role glucokit_worker`); GLUCOKIT_RETRAIN_AUDIENCE and GLUCOKIT_RETRAIN_INVOKERS, the OIDC tokens'
audience (the service's URL, as set on the push subscription, the scheduler job and the tasks) and the
service accounts allowed in; or, for local development only, GLUCOKIT_RETRAIN_INSECURE_LOCAL=1: no token
is checked, and the service listens on 127.0.0.1 only (so on Cloud Run it never becomes ready).

Without the two settings (or the local switch) it refuses to start, with exit
status 2. The service never trains: it queues, and the retrain job trains.
SIGTERM stops it gracefully: uvicorn finishes the requests in flight, then
exits by that signal.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from glucokit import logs
from glucokit.db import connection
from glucokit.jobs import retrain_service
from glucokit.settings import RetrainServiceSettings, SettingsError, load

log = logging.getLogger("retrain_service")


def main() -> int:
    log_settings = logs.configure("retrain_service")
    try:
        settings = load(RetrainServiceSettings)
    except SettingsError as error:
        log.error("%s", error)
        return 2
    verifier = retrain_service.verifier(settings)
    if verifier is None:
        log.warning("local development: no token is checked, listening on 127.0.0.1 only")
    url = settings.database_url.get_secret_value()
    app = logs.TraceRequests(retrain_service.create_app(lambda: connection.connect(url), verifier))
    host = "0.0.0.0" if verifier is not None else "127.0.0.1"  # noqa: S104 - Cloud Run sends to the container's port
    config = uvicorn.Config(
        app, host=host, port=settings.port, log_level="info", log_config=logs.uvicorn_log_config(log_settings)
    )
    socket = config.bind_socket()
    # The port actually bound (PORT=0 takes a free one), for whoever started the service.
    log.info("listening on port %d", socket.getsockname()[1])
    uvicorn.Server(config).run(sockets=[socket])
    return 0


if __name__ == "__main__":
    sys.exit(main())
