"""The Celery application, with every reliability setting chosen on purpose.

``celery -A worker.celery_app worker`` and ``axb worker`` both start a worker with these
defaults (:mod:`worker.celery_app` re-exports this module's public names). Settings come from
``AXB_*`` (see :mod:`worker.settings`).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import celeryd_init, worker_ready, worker_shutdown, worker_shutting_down

from worker.connections import celery_connection_config
from worker.queue.intake import install as install_intake
from worker.queue.liveness import install as install_liveness
from worker.queue.pump import start_pump, stop_pump
from worker.settings import Settings, get_settings
from worker.shutdown import STOPPING


class ConfigurationError(RuntimeError):
    """The worker refuses to start with settings that could lose or duplicate work."""


def celery_config(s: Settings) -> dict[str, Any]:
    # The broker URL, Sentinel's master_name and TLS come from worker/connections.py, where
    # every other Redis client of the project is built too.
    conn = celery_connection_config(s)
    return {
        "broker_url": conn["broker_url"],
        "result_backend": conn["result_backend"],
        # Always set (None without TLS): configure() on an app that had TLS must clear them.
        "broker_use_ssl": conn.get("broker_use_ssl"),
        "redis_backend_use_ssl": conn.get("redis_backend_use_ssl"),
        "task_default_queue": s.queue,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # Ack after the task body ran, so a crash mid-task leaves the message to be redelivered.
        "task_acks_late": True,
        # A prefork child killed mid-task: put the message back at once, not after the timeout.
        "task_reject_on_worker_lost": True,
        # Hard time limit hit: requeue (the record store knows whether the call went out).
        "task_acks_on_timeout": False,
        # Our tasks handle every vendor outcome themselves; an exception that still escapes is
        # turned into a requeue by the task (see tasks/bind.py), never a silent ack.
        "task_acks_on_failure": True,
        # One message per worker slot: nothing waits in a local buffer (where it would age
        # towards the visibility timeout) while other workers are idle.
        "worker_prefetch_multiplier": 1,
        # Results live in our own record store (worker.store); Celery's copy is not needed.
        "task_ignore_result": True,
        "task_soft_time_limit": s.soft_time_limit_s,
        "task_time_limit": s.hard_time_limit_s,
        # Redis has no acks: an unacked message comes back after the visibility timeout. It
        # must outlast the longest a task may hold a message (inline wait + hard limit): we
        # never use countdowns/ETAs (the delay queue does long waits), so it can be short,
        # and a crashed worker's binds are redelivered within about a minute and a half.
        "broker_transport_options": {
            "visibility_timeout": s.visibility_timeout_s,
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry_on_timeout": True,
            **conn.get("transport_options", {}),
        },
        "result_backend_transport_options": {
            "retry_policy": {"timeout": 30.0},
            **conn.get("result_backend_transport_options", {}),
        },
        "redis_socket_timeout": 10,
        "redis_socket_connect_timeout": 5,
        "redis_retry_on_timeout": True,
        "redis_backend_health_check_interval": 10,
        # Keep retrying the broker forever, at start-up too: Redis restarts must not kill workers.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_channel_error_retry": True,
        # Lost broker connection: in-flight acks cannot be sent; cancel those tasks so their
        # messages are redelivered instead of being half-acknowledged.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Soft shutdown: on SIGTERM let running tasks finish for a while before a cold stop.
        "worker_soft_shutdown_timeout": 10.0,
        "worker_enable_soft_shutdown_on_idle": True,
        # No remote control (pidbox): its Redis PUBSUB connection is read by the consumer's event
        # loop, and after a Redis restart redis-py reconnects it inside that read and blocks the
        # loop for good: the worker stays up and consumes nothing (seen in the chaos suite; the
        # upstream reports are celery#9054, #10205, #10302). Without it the loop only reads
        # BRPOP replies and reconnects cleanly. `celery inspect`/`control` then get no answer
        # from these workers; Flower still shows tasks from events. AXB_REMOTE_CONTROL=true
        # turns it back on.
        "worker_enable_remote_control": s.remote_control,
        "worker_hijack_root_logger": False,
        # Task events cost the consumer loop about an eighth of its time (make bench --profile);
        # Flower and `celery events` need them: AXB_TASK_EVENTS=true (docker-compose.yml sets
        # it; `axb worker` then also sends worker-online/heartbeat events). Every event is masked
        # (worker/queue/events.py). No task-sent: our producers write messages themselves
        # (worker/queue/publish.py); monitors see a task from task-received on.
        "worker_send_task_events": s.task_events,
        "task_send_sent_event": False,
        "task_track_started": False,
    }


def check_settings(s: Settings) -> None:
    """Refuse settings under which a message could be redelivered while still being worked on."""
    longest_hold = s.inline_wait_max_s + s.hard_time_limit_s
    if s.visibility_timeout_s <= longest_hold + 5:
        raise ConfigurationError(
            f"AXB_VISIBILITY_TIMEOUT_S={s.visibility_timeout_s:g} must exceed the longest a task holds"
            f" a message (AXB_INLINE_WAIT_MAX_S + AXB_HARD_TIME_LIMIT_S = {longest_hold:g}) by 5 s"
        )
    if s.soft_time_limit_s >= s.hard_time_limit_s:
        raise ConfigurationError("AXB_SOFT_TIME_LIMIT_S must be below AXB_HARD_TIME_LIMIT_S")
    if s.read_timeout_s + s.connect_timeout_s + s.inline_wait_max_s >= s.soft_time_limit_s:
        raise ConfigurationError("a vendor call plus its rate-limit wait must fit in AXB_SOFT_TIME_LIMIT_S")


def create_app(settings: Settings | None = None) -> Celery:
    s = settings or get_settings()
    # Events (AXB_TASK_EVENTS) go through worker/queue/events.py, which masks phone numbers.
    application = Celery(
        "axb",
        include=["tasks.bind", "tasks.unbind", "tasks.extend", "tasks.callback"],
        events="worker.queue.events:Events",
    )
    application.conf.update(celery_config(s))
    install_liveness(application)
    return application


app = create_app()
# Every Redis broker connection checks each queue item before kombu and Celery parse it (junk is
# dead-lettered, the worker goes on): see worker/queue/intake.py, which also says how it is selected.
install_intake(app)


def configure(settings: Settings) -> None:
    """Re-point the module's app at new settings (tests, the CLI)."""
    app.conf.update(celery_config(settings))
    # Drop connection and producer pools bound to the old broker (kombu keeps global ones).
    from kombu import pools

    pools.reset()  # type: ignore[no-untyped-call]
    app._pool = None
    app.amqp._producer_pool = None


@celeryd_init.connect
def _on_worker_init(**_: Any) -> None:
    """Refuse bad settings, mask logs, start Sentry: before the worker takes any message."""
    from worker.logs import setup_logging
    from worker.observability import init_sentry

    s = get_settings()
    check_settings(s)
    setup_logging(s)
    init_sentry(s)
    from worker.execution import log_if_full
    from worker.runtime import get_runtime
    from worker.sealing import refuse_start_without_data_key

    log_if_full(get_runtime().redis)
    refuse_start_without_data_key(s)
    share_result_backend(app)


def share_result_backend(application: Celery) -> None:
    """Give our tasks one result backend for every thread of the process.

    Celery keeps ``app.backend`` per thread (a backend need not be thread-safe), so each of a
    threads pool's 32 threads built its own at its first task: a Redis connection pool, and
    redis-py's package metadata read from disk (measured: a few per cent of a 5,000-bind
    drain's CPU at 0 ms). Our tasks ignore their results (``ignore_result=True``): the backend
    is only asked to mark them done, which stores nothing, so one shared instance is safe."""
    backend = application.backend
    for name, task in application.tasks.items():
        if name.startswith("axb.") and task.ignore_result:
            task.backend = backend


@worker_ready.connect
def _start_pump(**_: Any) -> None:
    from worker.runtime import get_runtime

    STOPPING.clear()
    start_pump()
    rt = get_runtime()
    if rt.settings.metrics_port:
        from worker.metrics import start_metrics_server

        start_metrics_server(rt.settings.metrics_port, rt.redis, rt.settings.queue, rt.settings.access_key_id)


@worker_shutdown.connect
def _stop_pump(**_: Any) -> None:
    stop_pump()


@worker_shutting_down.connect
def _stop_batches(**_: Any) -> None:
    """Warm shutdown (SIGTERM): running many-key messages start no further key; they give the
    rest back to the queue at once instead of holding them until the soft shutdown ends. (The
    threads pool; prefork children finish their message as before.)"""
    STOPPING.set()
