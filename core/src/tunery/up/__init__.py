"""`tunery up`: every service as its own process plus an embedded nats-server, on one machine, kept running.

The supervisor records what it started in `<data_dir>/run/up.json` (pids with their start times, ports, the NATS
URL, restarts), so that `tunery down` and `tunery status` in another terminal act on exactly those processes, and a
pid that the kernel has since handed to an unrelated program is never signalled. A process that exits on its own
is restarted with backoff; only a crash loop makes the supervisor give up on it (see `restart.RestartPolicy`).

    catalog     the services and trainer workers `up` can start
    state       up.json: what runs, where, with which pid, how often it was restarted
    procs       processes by pid and start time: start with a log, test, signal, stop
    probes      health probes and `tunery status`
    restart     the restart policy: backoff, crash-loop bound
    supervisor  start, supervise, stop (`Supervisor`), and `down`
    background  `up --detach`: the supervisor in the background
"""

from tunery.up.background import StartFailed, start_in_background
from tunery.up.catalog import (
    DEFAULT_NATS_PORT,
    HOST,
    SERVICES,
    SPECS,
    WORKER,
    WORKER_MODULE,
    WORKER_READY,
    ServiceSpec,
    serve_argv,
    spec,
)
from tunery.up.probes import Health, StatusRow, check_health, nats_reachable, service_address, status
from tunery.up.procs import ProcRecord, log_tail, pid_alive, port_free, stop_processes
from tunery.up.restart import Child, Restarter, RestartPolicy
from tunery.up.state import (
    STATE_VERSION,
    Layout,
    Restarts,
    RunState,
    ServiceRecord,
    WorkerRecord,
    default_data_dir,
    pids,
    remove_state,
)
from tunery.up.supervisor import START_TIMEOUT, STOP_GRACE, AlreadyRunning, Interrupted, Report, Supervisor, down

__all__ = [
    "DEFAULT_NATS_PORT", "HOST", "SERVICES", "SPECS", "START_TIMEOUT", "STATE_VERSION", "STOP_GRACE", "WORKER",
    "WORKER_MODULE", "WORKER_READY", "AlreadyRunning", "Child", "Health", "Interrupted", "Layout", "ProcRecord",
    "Report", "RestartPolicy", "Restarter", "Restarts", "RunState", "ServiceRecord", "ServiceSpec", "StartFailed",
    "StatusRow", "Supervisor", "WorkerRecord", "check_health", "default_data_dir", "down", "log_tail",
    "nats_reachable", "pid_alive", "pids", "port_free", "remove_state", "serve_argv", "service_address", "spec",
    "start_in_background", "status", "stop_processes",
]
