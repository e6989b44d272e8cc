"""Cloud Run service: queue retrains on Pub/Sub push, Cloud Scheduler and Cloud Tasks requests.

    python workers/retrain_service.py

Environment:
    PORT            the port to listen on (Cloud Run sets it; default 8080)
    DATABASE_URL    the database; the login role must be allowed to `set role glucokit_worker`

The service never trains: it queues, and the retrain job trains. SIGTERM stops
it after the requests in flight.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from glucokit import database, retrain_service


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("retrain_service: DATABASE_URL is required", file=sys.stderr)
        return 2
    service = retrain_service.server(int(os.environ.get("PORT", "8080")), lambda: database.connect(url))
    # shutdown() waits for serve_forever() to return, so it is called from another thread.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: threading.Thread(target=service.shutdown).start())
    print(f"listening on port {service.server_address[1]}", flush=True)
    service.serve_forever()
    service.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
