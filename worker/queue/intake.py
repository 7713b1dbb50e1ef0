"""Junk-proof consumption: the one place where a queue item's raw bytes become a message.

kombu's Redis channel turns each item it pops (``BRPOP`` in ``_brpop_read``, ``RPOP`` in
``_get``) into a message with ``json.loads`` and hands it on to Celery's consumer. An item that is
not a message we wrote stops the worker ("Unrecoverable error: JSONDecodeError", exit status 0),
loops its broker connection (no ``properties``) or is dropped with only a log line (an unknown
task, a refused content type). :class:`JunkSafeChannelMixin` checks every item first
(:func:`worker.queue.envelope.check_envelope`); an item that fails is taken off the queue and kept as
one ``axb.MALFORMED_MESSAGE`` dead letter (masked, capped), and the worker goes on with the next.

How the transport is selected: kombu picks a transport class from the broker URL's scheme through
its alias table :data:`kombu.transport.TRANSPORT_ALIASES`. :func:`install` (called once by
:mod:`worker.queue.celery_app`) points the ``redis``, ``rediss`` and ``sentinel`` aliases at
:class:`Transport` and :class:`SentinelTransport` below: kombu's own Redis and Sentinel transports
with the checking channel. Everything else about them is kombu's. Why the alias table rather than
Celery's ``broker_transport`` setting: kombu drops an explicit transport class when it fails over
to the next URL of a ``sentinel://a;sentinel://b`` list (``Connection.switch`` parses the URL's
scheme again), and ``rediss://`` gets its TLS default only under its own alias.

``_brpop_read`` and ``_get`` are kombu 5.7's, copied with one change: the item goes through
:meth:`JunkSafeChannelMixin.take` instead of ``loads``. kombu offers no hook between popping an
item and parsing it. tests/test_poison.py fails if kombu's originals change, so that the copies
are looked at again on a kombu upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from queue import Empty
from typing import Any

import redis
from kombu.exceptions import InconsistencyError
from kombu.transport import TRANSPORT_ALIASES, get_transport_cls
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

from worker.deadletters import dead_letter_raw
from worker.queue.envelope import JSON_MIME, MalformedMessage, check_envelope, readable

log = logging.getLogger("axb.intake")


@dataclass(frozen=True)
class Rules:
    """What a runnable item is: one of these tasks, in one of these content types."""

    task_names: Collection[str]
    accept: Collection[str]


_rules_source: Any = None  # the Celery app given to install()


def current_rules() -> Rules:
    """The installed app's registered tasks and accepted content types (JSON only before install)."""
    app = _rules_source
    if app is None:
        return Rules(task_names=(), accept=(JSON_MIME,))
    from kombu.serialization import prepare_accept_content

    accept = prepare_accept_content(app.conf.accept_content)  # type: ignore[no-untyped-call]
    return Rules(task_names=frozenset(app.tasks), accept=accept)


class JunkSafeChannelMixin:
    """Put before a kombu Redis ``Channel`` class: items are checked before kombu parses them."""

    # Provided by kombu's Channel.
    client: Any
    connection: Any
    qos: Any
    sep: str
    _queue_cycle: Any
    _in_poll: Any

    def take(self, item: bytes, queue: str) -> dict[str, Any] | None:
        """The envelope of a popped ``item``; ``None`` when it was junk (then dead-lettered).

        Replies to remote control (``celery inspect ping``, Flower's inspect) travel on lists too,
        read only by the process that asked: they are kombu's, not task messages, and go to it
        unchecked (junk there is dropped with a warning, nothing to keep)."""
        if is_control_reply_queue(queue):
            try:
                return dict(kombu_json.loads(item))  # type: ignore[no-untyped-call]
            except Exception as exc:
                log.warning("junk on control reply queue %s dropped (%s)", queue, type(exc).__name__)
                return None
        try:
            rules = current_rules()
            return check_envelope(item, task_names=rules.task_names, accept=rules.accept)
        except MalformedMessage as exc:
            self.dead_letter(item, queue, str(exc))
            return None

    def dead_letter(self, item: bytes, queue: str, reason: str, task_id: str = "") -> None:
        """Keep ``item`` (already off its queue) as one dead letter. If Redis refuses even that,
        say so loudly: the item was popped and cannot be put back safely."""
        try:
            with self.conn_or_acquire() as client:  # type: ignore[attr-defined]
                entry = dead_letter_raw(
                    client, raw=readable(item), reason=reason, queue=queue, task_id=task_id
                )
        except redis.RedisError as err:
            log.critical(
                "junk on queue %s (%s) could not be dead-lettered (%s): %.300s",
                queue,
                reason,
                type(err).__name__,
                readable(item, 300),
            )
            return
        log.error("junk on queue %s dead-lettered as axb.MALFORMED_MESSAGE %s: %s", queue, entry, reason)

    def deliver(self, payload: dict[str, Any], item: bytes, queue: str) -> None:
        """Hand a checked envelope to kombu and Celery. Should anything in them still fail on it
        (not Redis: that is kombu's to handle), the item is dead-lettered and its delivery settled
        instead of stopping the consumer."""
        try:
            self.connection._deliver(payload, queue)
        except (redis.RedisError, OSError, InconsistencyError):
            raise  # the broker connection, not the item (kombu reconnects)
        except Exception as exc:
            tag = payload["properties"]["delivery_tag"]
            self.dead_letter(item, queue, f"refused by the consumer: {type(exc).__name__}: {exc}")
            self.qos.ack(tag)

    # --- kombu 5.7's, with ``take``/``deliver`` in place of ``loads``/``_deliver`` ------------------

    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:  # type: ignore[attr-defined]
                # if there's a ConnectionError, disconnect so the next
                # iteration will reconnect automatically.
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = dest.decode(errors="replace") if isinstance(dest, bytes) else dest
                dest = dest.rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                payload = self.take(item, dest)
                if payload is not None:
                    self.deliver(payload, item, dest)
                return True
            raise Empty()
        finally:
            self._in_poll = None
            # The BRPOP connection is now idle: kombu flushes a pending re-auth token here.
            self._flush_brpop_reauth()  # type: ignore[attr-defined]

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        with self.conn_or_acquire() as client:  # type: ignore[attr-defined]
            for pri in self.priority_steps:  # type: ignore[attr-defined]
                while item := client.rpop(self._q_for_pri(queue, pri)):  # type: ignore[attr-defined]
                    payload = self.take(item, queue)
                    if payload is not None:
                        self._maybe_update_queues_expire(client, queue)  # type: ignore[attr-defined]
                        return payload
            self._maybe_update_queues_expire(client, queue)  # type: ignore[attr-defined]
            raise Empty()


class Channel(JunkSafeChannelMixin, kombu_redis.Channel):
    """kombu's Redis channel, checking every item it pops."""


class SentinelChannel(JunkSafeChannelMixin, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel, checking every item it pops."""


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


TRANSPORTS = {
    "redis": f"{__name__}:Transport",
    "rediss": f"{__name__}:Transport",
    "sentinel": f"{__name__}:SentinelTransport",
}


def install(app: Any) -> None:
    """Make every Redis broker connection in this process check its items against ``app``'s
    tasks and accepted content. Idempotent; call it before the first broker connection."""
    global _rules_source
    _rules_source = app
    TRANSPORT_ALIASES.update(TRANSPORTS)
    for scheme in TRANSPORTS:
        transport = get_transport_cls(scheme)
        if transport is None or not issubclass(transport.Channel, JunkSafeChannelMixin):  # type: ignore[attr-defined]
            raise RuntimeError(
                f"kombu resolved the {scheme}:// transport before worker.queue.intake.install(); import"
                " worker.celery_app before opening broker connections"
            )


def is_control_reply_queue(queue: str) -> bool:
    """Whether ``queue`` is a remote-control reply list (kombu's ``<id>.reply.<app>.pidbox``)."""
    return queue.endswith(".pidbox")


def is_junk_safe(channel: Any) -> bool:
    """Whether a kombu channel checks what it pops (for tests and start-up checks)."""
    return isinstance(channel, JunkSafeChannelMixin)
