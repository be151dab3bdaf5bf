"""`tunery`: run the platform on one machine (`up`, `down`, `status`), one service (`serve`), and talk to it."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from tunery import up as upmod
from tunery.cli import datasets, evals, jobs, logs, monitor, output
from tunery.cli.common import JsonOpt
from tunery.cli.output import console, info, say
from tunery.errors import FailedPrecondition, TuneryError
from tunery.plugins import PluginRegistry

app = typer.Typer(name="tunery", help="Tunery: fine-tune, evaluate and serve your own LLMs.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(evals.app, name="eval")
app.add_typer(logs.app, name="logs")
app.command("monitor")(monitor.monitor)

# Command groups a service package brings (entry-point group `tunery.cli`: the gateway's `keys`), so core never
# imports a service; a group whose package is missing says where it comes from.
CLI_PLUGINS: PluginRegistry[typer.Typer] = PluginRegistry("tunery.cli", "CLI command group",
                                                          check=lambda obj: isinstance(obj, typer.Typer))
_PROVIDED_BY = {"keys": "tunery-gateway"}
for _name, _group in CLI_PLUGINS.all().items():
    app.add_typer(_group, name=_name)
for _name, _package in _PROVIDED_BY.items():
    if _name not in CLI_PLUGINS.names():

        def _missing(_package: str = _package, _name: str = _name) -> None:
            output.fail(FailedPrecondition(f"`tunery {_name}` comes with {_package}, which is not installed here: "
                                           f"pip install {_package}", code="service_not_installed"))

        app.command(_name, help=f"(needs {_package})", context_settings={"allow_extra_args": True,
                                                                          "ignore_unknown_options": True})(_missing)

DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="TUNERY_DATA_DIR", show_envvar=True,
                                                 help="State, logs and artifacts (default: ~/.tunery)")]

_STATE_STYLE = {"SERVING": "green", "reachable": "green", "running": "green", "NOT_SERVING": "yellow",
                "restarting": "yellow"}


def _exit_text(returncode: int | None) -> str:
    """What `tunery status` shows of a process's last exit: `SIGKILL`, `code 1`, or nothing if it never exited."""
    if returncode is None:
        return ""
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-returncode).name
        return f"signal {-returncode}"
    return f"code {returncode}"


_SERVE_TARGETS = (*upmod.SPECS, upmod.WORKER)
_POLICY = upmod.RestartPolicy()


@app.command()
def up(data_dir: DataDirOpt = None,
       nats_port: Annotated[int, typer.Option(min=1, max=65535, help="Port of the embedded nats-server.")] = (
           upmod.DEFAULT_NATS_PORT),
       detach: Annotated[bool, typer.Option("--detach", "-d", help="Return once healthy, the supervisor running in "
                                            "the background (log: logs/up.log); stop with `tunery down`.")] = False,
       timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for every service to be healthy.")] = (
           upmod.START_TIMEOUT),
       service: Annotated[list[str] | None, typer.Option(
           "--service", "-s", help=f"Start only this service (repeatable; one of {', '.join(upmod.SPECS)}) "
                                   "(default: every installed one)")] = None,
       workers: Annotated[int, typer.Option("--workers", min=0, help="Trainer workers to start once the trainer "
                                            "service is healthy; each trains one job at a time (0: none).")] = 1,
       restart_backoff: Annotated[float, typer.Option(
           min=0, envvar="TUNERY_UP_RESTART_BACKOFF", show_envvar=True,
           help="Seconds before a process that exited on its own is started again; doubles per restart within "
                "--restart-window, up to --restart-backoff-max.")] = _POLICY.backoff,
       restart_backoff_max: Annotated[float, typer.Option(
           min=0, envvar="TUNERY_UP_RESTART_BACKOFF_MAX", show_envvar=True,
           help="Longest wait before a restart.")] = _POLICY.backoff_max,
       max_restarts: Annotated[int, typer.Option(
           min=0, envvar="TUNERY_UP_MAX_RESTARTS", show_envvar=True,
           help="Restarts within --restart-window after which a process that exits again is a crash loop and is "
                "given up on (the rest keeps running); 0: never restart.")] = _POLICY.max_restarts,
       restart_window: Annotated[float, typer.Option(
           min=0.001, envvar="TUNERY_UP_RESTART_WINDOW", show_envvar=True,
           help="Seconds over which restarts count towards --max-restarts.")] = _POLICY.window,
       ) -> None:
    """Start NATS, every installed service and trainer workers on 127.0.0.1 and keep them running (a process that
    exits on its own is restarted with backoff); Ctrl-C stops them all."""
    for name in service or []:
        if name not in upmod.SPECS:
            raise typer.BadParameter(f"unknown service {name!r}; valid: {', '.join(upmod.SPECS)}",
                                     param_hint="--service")
    with output.handled():
        policy = upmod.RestartPolicy(restart_backoff, restart_backoff_max, max_restarts, restart_window)
    if detach:
        args = ["--nats-port", str(nats_port), "--timeout", str(timeout), "--workers", str(workers),
                "--restart-backoff", str(restart_backoff), "--restart-backoff-max", str(restart_backoff_max),
                "--max-restarts", str(max_restarts), "--restart-window", str(restart_window)]
        for name in service or []:
            args += ["--service", name]
        try:
            with output.handled():
                state, log = upmod.start_in_background(args, data_dir, timeout=timeout)
        except upmod.StartFailed as err:
            output.err_console.print(escape(err.output), soft_wrap=True, highlight=False)
            raise typer.Exit(err.code) from None
        except KeyboardInterrupt:
            info("interrupted: stopped everything that had started")
            raise typer.Exit(130) from None
        _print_started(state)
        say(f"data in {escape(state.data_dir)}; state in {escape(str(upmod.Layout.of(data_dir).state_file))}")
        supervisor = state.supervisor.pid if state.supervisor else "?"
        say(f"running in the background, kept running by supervisor pid {supervisor} (its log: {escape(str(log))}): "
            "`tunery status`, `tunery down`")
        return
    sup = upmod.Supervisor(data_dir, nats_port=nats_port, report=info, only=service or (), workers=workers,
                           policy=policy)
    sup.install_signals()
    try:
        state = sup.start(timeout)
    except upmod.Interrupted as err:
        info(f"{err}: stopped everything that had started")
        raise typer.Exit(130) from None
    except TuneryError as err:
        output.fail(err)
    _print_started(state)
    say(f"data in {escape(state.data_dir)}; state in {escape(str(sup.layout.state_file))}")
    say("all healthy; Ctrl-C (or `tunery down`) stops everything. A process that exits on its own is restarted: "
        f"{policy.describe()}")
    raise typer.Exit(sup.supervise())


def _print_started(state: upmod.RunState) -> None:
    t = output.table("component", "listens on", "pid", "log")
    t.add_row("nats", state.nats_url + ("" if state.nats else " (external)"), str(state.nats.pid if state.nats else ""),
              escape(state.nats_log))
    for rec in state.services.values():
        t.add_row(rec.name, rec.address, str(rec.proc.pid), escape(rec.log))
    for w in state.workers:
        t.add_row(w.name, "(no port; pulls jobs from NATS)", str(w.proc.pid), escape(w.log))
    t.columns[-1].overflow = "fold"
    console.print(t)


@app.command()
def down(data_dir: DataDirOpt = None,
         grace: Annotated[float, typer.Option(min=0, help="Seconds to wait for a clean stop before SIGKILL.")] = (
             upmod.STOP_GRACE)) -> None:
    """Stop what `tunery up` started (foreground or detached): trainer workers, then services, NATS last."""
    with output.handled():
        state = upmod.down(data_dir, grace=grace, report=info)
    if state is None:
        info(f"nothing to stop: no {upmod.Layout.of(data_dir).state_file}")
        return
    names = [n for n, _ in upmod.pids(state)]
    say(f"stopped {', '.join(names) or 'nothing'}")


@app.command()
def status(data_dir: DataDirOpt = None,
           timeout: Annotated[float, typer.Option(min=0.1, help="Seconds per health check.")] = 2.0,
           as_json: JsonOpt = False) -> None:
    """Health of NATS, each service and each trainer worker; exit code 0 only when all are healthy."""
    with output.handled():
        rows, state = upmod.status(data_dir, timeout)
    healthy = all(r.healthy for r in rows)
    if as_json:
        output.print_json({"healthy": healthy, "running": state is not None,
                           "components": [{"name": r.component, "address": r.address, "state": r.state,
                                           "healthy": r.healthy, "pid": r.pid, "log": r.log, "restarts": r.restarts,
                                           "last_exit": r.last_exit} for r in rows]})
    else:
        if state is None:
            info(f"no `tunery up` running from {upmod.Layout.of(data_dir).data_dir}; checking configured addresses")
        t = output.table("component", "address", "state", "pid", "restarts", "last exit", "log")
        for r in rows:
            style = _STATE_STYLE.get(r.state.split()[0], "red")
            t.add_row(r.component, r.address, f"[{style}]{r.state}[/]", str(r.pid or ""), str(r.restarts or ""),
                      _exit_text(r.last_exit), escape(r.log))
        t.columns[-1].overflow = "fold"
        console.print(t)
    raise typer.Exit(0 if healthy else 1)


@app.command()
def serve(service: Annotated[str, typer.Argument(help=f"One of: {', '.join(_SERVE_TARGETS)}.")],
          host: Annotated[str | None, typer.Option(help="Interface to bind (default: the service's setting)")] = None,
          port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default: the service's)")] = None,
          processes_per_job: Annotated[int | None, typer.Option(
              min=0, max=1024, help="trainer-worker only: processes per job, started with torchrun (one per GPU; "
              "0 = one per visible GPU). Default: TUNERY_TRAINER_PROCESSES_PER_JOB, else 1.")] = None,
          ) -> None:
    """Run one service, or a trainer worker, in the foreground (for deployments); configured by its
    TUNERY_<SERVICE>_* environment (a worker reads the trainer's)."""
    if service not in _SERVE_TARGETS:
        raise typer.BadParameter(f"unknown service {service!r}; valid: {', '.join(_SERVE_TARGETS)}",
                                 param_hint="SERVICE")
    if service == upmod.WORKER and (host or port):
        raise typer.BadParameter("a trainer worker listens on no port; it pulls jobs from NATS",
                                 param_hint="--host/--port")
    if processes_per_job is not None:
        if service != upmod.WORKER:
            raise typer.BadParameter(f"only a {upmod.WORKER} trains; {service} takes no processes per job",
                                     param_hint="--processes-per-job")
        os.environ["TUNERY_TRAINER_PROCESSES_PER_JOB"] = str(processes_per_job)
    with output.handled():
        argv = upmod.serve_argv(service)
    if service in upmod.SPECS:
        spec = upmod.SPECS[service]
        if host:
            os.environ[f"{spec.env_prefix}HOST"] = host
        if port:
            os.environ[f"{spec.env_prefix}PORT"] = str(port)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


if __name__ == "__main__":
    app(prog_name="tunery")
