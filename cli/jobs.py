"""`archive scheduler`, `archive worker`, `archive jobs list|show|run|names`: the
preservation jobs (R-SCHED-1, R-INCIDENT-1)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click

from cli.context import emit, handle_errors, json_option


def _instance():
    return click.get_current_context().obj.instance


def _log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _on_stop(callback) -> None:
    """SIGTERM and SIGINT call ``callback`` (a clean stop)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: callback())


@click.command()
@handle_errors
def scheduler() -> None:
    """Start the runs of the periodic jobs on schedule (one process per archive).

    Each trigger only records a run and its batches; `archive worker` processes do
    the batches. A job still running when its next trigger comes is not started again.
    Stops on SIGTERM/SIGINT.
    """
    from apscheduler.schedulers.blocking import BlockingScheduler

    from preservation.scheduler import run_scheduler, scheduled_jobs

    instance = _instance()
    instance.catalog  # noqa: B018 - fail now, clearly, if the catalog is not initialised
    _log_to_stderr()
    blocking = BlockingScheduler(timezone="UTC")
    _on_stop(lambda: blocking.shutdown(wait=False))
    jobs = scheduled_jobs(instance.settings)
    click.echo("scheduler: " + ", ".join(f"{n} every {m} min" for n, m in jobs.items())
               if jobs else "scheduler: no job is scheduled (every interval is 0)", err=True)
    run_scheduler(instance, scheduler=blocking)


@click.command()
@click.option("--id", "worker_id", default=None, metavar="ID",
              help="This worker's name in the batches it does (default: host:pid:n).")
@click.option("--once", is_flag=True, help="Stop when no batch is left to claim.")
@click.option("--job", "job", default=None, metavar="NAME", help="Only batches of this job.")
@json_option
@handle_errors
def worker(worker_id: str | None, once: bool, job: str | None, as_json: bool) -> None:
    """Claim and do batches of job runs until stopped (SIGTERM/SIGINT).

    Any number of workers on any machines share the runs through the catalog
    (PostgreSQL). A batch in progress when the worker is told to stop is given back at
    its next heartbeat; a worker that dies leaves its lease to expire
    (scheduler.lease_seconds) and another worker does the batch.
    """
    from preservation import registry, runner

    instance = _instance()
    instance.catalog  # noqa: B018
    if job is not None:
        registry.get(job)
    worker_id = worker_id or runner.new_worker_id()
    _log_to_stderr()
    stop = threading.Event()
    _on_stop(stop.set)
    log = logging.getLogger("archive.jobs")
    log.info("worker %s started%s", worker_id, f" (job {job})" if job else "")

    def on_batch(claim, outcome):
        log.info("worker %s: %s batch %s of run %s: %s", worker_id, claim.job, claim.seq,
                 claim.run_id, outcome)

    done = runner.work(instance, worker_id, stop, job=job, once=once, on_batch=on_batch)
    emit({"worker": worker_id, "batches": done}, as_json,
         lambda d: click.echo(f"worker {d['worker']}: {d['batches']} batch(es) done",
                              err=True))


@click.group()
def jobs() -> None:
    """Preservation job runs: list, show, run one now, the known jobs."""


@jobs.command("names")
@json_option
@handle_errors
def jobs_names(as_json: bool) -> None:
    """The jobs this archive knows, with their description and interval."""
    from preservation import registry

    settings = click.get_current_context().obj.settings
    data = {"jobs": [{"name": spec.name, "description": spec.description,
                      "interval_setting": spec.interval_setting,
                      "interval_minutes": registry.interval_minutes(spec, settings),
                      "params": dict(spec.param_help)}
                     for spec in registry.JOBS.values()]}

    def human(d):
        for j in d["jobs"]:
            every = f"every {j['interval_minutes']} min" if j["interval_minutes"] else \
                "manual only"
            click.echo(f"{j['name']:<18} {every:<18} {j['description']}")
            for name, text in j["params"].items():
                click.echo(f"{'':<18}   --param {name}=...  {text}")

    emit(data, as_json, human)


def _status_line(run: dict) -> str:
    counts = ", ".join(f"{k}={v}" for k, v in sorted(run["counts"].items())) or "-"
    errors = len(run["errors"])
    return (f"{run['id']}  {run['job']:<16} {run['status']:<8} {run['trigger']:<8} "
            f"{run['started_at'][:19]}  {(run['finished_at'] or '')[:19]:<19}  "
            f"{run['principal']}  {counts}" + (f"  ({errors} error(s)/alert(s))"
                                               if errors else ""))


@jobs.command("list")
@click.option("--job", default=None, metavar="NAME", help="Only runs of this job.")
@click.option("--status", type=click.Choice(["running", "ok", "failed"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@json_option
@handle_errors
def jobs_list(job: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Runs, newest first: job, trigger, accountable principal, start, end, counts,
    status, errors."""
    from archive.principal import Principal
    from preservation import runner

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        total, rows = runner.list_runs(session, Principal.cli_operator(),
                                       runner.RunFilter(job=job, status=status, limit=limit),
                                       client="cli", clock=instance.clock)
        data = {"total": total, "runs": [runner.run_to_dict(r) for r in rows]}

    def human(d):
        for run in d["runs"]:
            click.echo(_status_line(run))
        click.echo(f"{len(d['runs'])} of {d['total']} run(s)")

    emit(data, as_json, human)


@jobs.command("show")
@click.argument("run_id")
@json_option
@handle_errors
def jobs_show(run_id: str, as_json: bool) -> None:
    """One run with its batches (who did each, attempts, results, errors)."""
    from archive.principal import Principal
    from preservation import runner

    instance = _instance()
    with instance.catalog.unit_of_work() as session:
        run, batches = runner.get_run(session, Principal.cli_operator(), run_id,
                                      client="cli", clock=instance.clock)
        data = runner.run_to_dict(run, batches)
    emit(data, as_json, _show_human)


def _show_human(d: dict) -> None:
    click.echo(_status_line(d))
    for e in d["errors"]:
        where = f" (batch {e['batch']})" if e.get("batch") else ""
        click.echo(f"  {e['kind'].upper()}{where}: {e['message']}")
    for b in d.get("batches", []):
        click.echo(f"  batch {b['seq']:>4} {b['status']:<8} attempts={b['attempts']} "
                   f"by={b['done_by'] or b['lease_owner'] or '-'} "
                   f"{b['result'] or ''}{'  ' + b['error'] if b['error'] else ''}")


def _params(values: tuple[str, ...]) -> dict:
    from archive.errors import InputError

    out = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise InputError(f"--param {value!r}: expected key=value")
        out[key] = val
    return out


@jobs.command("run")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the job (see `archive jobs names`); repeatable.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Work the batches here and wait for the end, or only start the run "
                   "(workers do it).")
@json_option
@handle_errors
def jobs_run(name: str, params: tuple[str, ...], wait: bool, as_json: bool) -> None:
    """Run job NAME now. Exit 1 when the run failed or raised alerts, 3 when a run of
    the job is already in progress."""
    from archive.principal import Principal
    from preservation import runner

    instance = _instance()
    values = _params(params)
    operator = Principal.cli_operator()
    if as_json or not wait:
        run_id = runner.run_now(instance, name, principal=operator, params=values, wait=wait)
    else:
        bar = None

        def progress(done: int, total: int) -> None:
            nonlocal bar
            if bar is None:
                bar = click.progressbar(length=max(total, 1), label=name, file=sys.stderr,
                                        show_pos=True)
                bar.__enter__()
            bar.update(done - bar.pos)

        try:
            run_id = runner.run_now(instance, name, principal=operator, params=values,
                                    progress=progress)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
    with instance.catalog.unit_of_work() as session:
        run, batches = runner.get_run(session, operator, run_id, client="cli",
                                      clock=instance.clock)
        data = runner.run_to_dict(run, batches if not as_json else None)
    emit(data, as_json, _show_human)
    if data["status"] == "failed" or (data["status"] == "ok" and data["errors"]):
        sys.exit(1)


COMMANDS = [scheduler, worker, jobs]
