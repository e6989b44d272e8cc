"""Cloud Run service: queue retrains on Pub/Sub push, Cloud Scheduler and Cloud Tasks requests.

    python workers/retrain_service.py

Environment:
    PORT                        the port to listen on (Cloud Run sets it; default 8080)
    DATABASE_URL                the database; the login role must be allowed to `set role glucokit_worker`
    GLUCOKIT_RETRAIN_AUDIENCE   the audience the OIDC tokens must name: the service's URL (as set on the push
                                subscription, the scheduler job and the tasks); several, comma-separated
    GLUCOKIT_RETRAIN_INVOKERS   the service accounts allowed in (the tokens' verified `email`), comma-separated
    GLUCOKIT_RETRAIN_INSECURE_LOCAL
                                1: local development only, instead of the two above: no token is checked, and
                                the service listens on 127.0.0.1 only (so on Cloud Run it never becomes ready)

Without the two settings (or the local switch) it refuses to start, with exit
status 2. The service never trains: it queues, and the retrain job trains.
SIGTERM stops it gracefully: uvicorn finishes the requests in flight, then
exits by that signal.
"""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from glucokit.db import connection
from glucokit.errors import GlucokitError
from glucokit.jobs import retrain_service


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("retrain_service: DATABASE_URL is required", file=sys.stderr)
        return 2
    port = os.environ.get("PORT", "8080")
    if not port.isdigit():
        print(f"retrain_service: PORT={port!r} is not a port number", file=sys.stderr)
        return 2
    try:
        verifier = retrain_service.verifier_from_environment(os.environ)
    except GlucokitError as error:
        print(f"retrain_service: {error}", file=sys.stderr)
        return 2
    if verifier is None:
        logging.getLogger("glucokit.jobs.retrain_service").warning(
            "local development: no token is checked, listening on 127.0.0.1 only"
        )
    app = retrain_service.create_app(lambda: connection.connect(url), verifier)
    host = "0.0.0.0" if verifier is not None else "127.0.0.1"  # noqa: S104 - Cloud Run sends to the container's port
    config = uvicorn.Config(app, host=host, port=int(port), log_level="info")
    socket = config.bind_socket()
    print(f"listening on port {socket.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[socket])
    return 0


if __name__ == "__main__":
    sys.exit(main())
