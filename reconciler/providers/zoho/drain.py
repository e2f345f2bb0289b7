"""One daemon replica reduced to the T2Mobile submit job, run until no order is left to work on by any replica:
how bench/zoho_rate.py and the rate-limit test drain orders with several replicas against one Zoho."""
from __future__ import annotations

import threading
import uuid

from sqlalchemy import Engine

from jobs.submit_zoho import SubmitZoho
from reconciler.app import assemble
from reconciler.config import Config
from reconciler.engine.schema import IN_DOUBT, IN_FLIGHT, QUEUED
from reconciler.providers.zoho.orders import zoho_orders_in

BUSY = (QUEUED, IN_FLIGHT, IN_DOUBT)


def drain_as_replica(config: Config, engine: Engine, *, worker_id: str | None = None,
                     stop: threading.Event | None = None) -> int:
    """Run the submit job every zoho.poll_interval_seconds, as the daemon does, until no order is queued, in
    flight or in doubt (or `stop` is set); the number of runs. `engine` is this replica's own."""
    stop = stop or threading.Event()
    ctx = assemble(config, engine, worker_id=worker_id or f"drain-{uuid.uuid4().hex[:8]}", stop=stop).context
    job = SubmitZoho(config)
    runs = 0
    while not stop.is_set():
        job.run(ctx)
        runs += 1
        if not zoho_orders_in(engine, BUSY):
            break
        stop.wait(config.zoho.poll_interval_seconds)  # the daemon's poll
    return runs
