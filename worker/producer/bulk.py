"""Enqueue many binds with pipelined round trips: :func:`enqueue_binds`, and its two halves
:func:`prepare_binds` (no Redis) and :func:`start_binds` / :func:`commit_binds` (the backfill)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.errors import AxbError, IdempotencyConflictError, InvalidRequestError
from worker.masking import mask_text
from worker.producer import checks
from worker.producer.binds import PreparedBind, callback_fields, commit_prepared, prepare_bind, url_checker
from worker.producer.handles import BindHandle
from worker.runtime import Runtime, get_runtime
from worker.store import PendingCreates
from worker.vendor import BindAxbRequest

BindItem = (
    BindAxbRequest
    | Mapping[str, Any]
    | tuple[BindAxbRequest | Mapping[str, Any], str | None]
    | tuple[BindAxbRequest | Mapping[str, Any], str | None, str | None]
)


@dataclass
class BulkResult:
    """``handles[i]`` is the handle of item ``indices[i]``; ``rejected`` holds (index, error)."""

    handles: list[BindHandle] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)

    @property
    def created(self) -> int:
        return sum(1 for h in self.handles if h.created)

    def collect(self, index: Sequence[int], results: Sequence[BindHandle | IdempotencyConflictError]) -> None:
        """Add a committed chunk: ``results[i]`` is for item ``index[i]``."""
        for idx, res in zip(index, results, strict=True):
            if isinstance(res, IdempotencyConflictError):
                self.rejected.append((idx, res))
            else:
                self.handles.append(res)
                self.indices.append(idx)


class PartialEnqueueError(AxbError):
    """:func:`enqueue_binds` stopped part-way (its iterable raised, Redis failed, ...) after
    committing some items. ``result`` is exactly what was committed (``result.indices``: the
    items that have a record and a message) and rejected; ``uncertain`` are the indices of a
    chunk that was on its way to Redis when it stopped: they may or may not be recorded, and
    enqueueing them again is safe (same keys, no second binding). Every other item was not
    committed. ``__cause__`` is the error."""

    def __init__(self, result: BulkResult, uncertain: list[int], cause: BaseException) -> None:
        self.result = result
        self.uncertain = uncertain
        super().__init__(
            mask_text(
                f"enqueue_binds stopped after committing {len(result.handles)} item(s)"
                f" ({len(uncertain)} more may be recorded; enqueue them again):"
                f" {type(cause).__name__}: {cause}"
            )
        )


def prepared_items(
    items: Iterable[BindItem],
    rt: Runtime,
    *,
    deadline: datetime | None,
    callback_url: str | None,
    callback_numbers: bool,
) -> Iterator[tuple[int, PreparedBind | AxbError]]:
    """Each item's index and its prepared row, or the error that rejects it (read lazily)."""
    check = url_checker(rt)
    for i, item in enumerate(items):
        try:
            req, key, url = split_item(item, callback_url)
            callback = callback_fields(check, url, callback_numbers)
            yield i, prepare_bind(req, key, deadline, rt, callback)
        except AxbError as err:
            yield i, err


def enqueue_binds(
    items: Iterable[BindItem],
    *,
    deadline: datetime | None = None,
    chunk: int = 1000,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> BulkResult:
    """Validate and enqueue many binds with pipelined round trips.

    Items are requests, ``(request, idempotency_key)`` pairs or ``(request, idempotency_key,
    callback_url)`` triples (the key may be None; the item's URL overrides ``callback_url``).
    Invalid items (a wrong type or a refused callback URL included) are reported in
    ``rejected`` with their index and error; they never stop the others. ``result.indices``
    tells which item each handle is for.

    Items are committed chunk by chunk as the iterable is read. If the call stops part-way
    for any other reason (the iterable raises, Redis fails) after a chunk was committed, it
    raises :class:`PartialEnqueueError` carrying the committed items, never a bare error; when
    nothing was committed yet, the error itself is raised. Wrong types for ``items``,
    ``deadline`` or ``chunk`` raise :class:`InvalidRequestError` before anything is committed.
    """
    items = checks.items(items)
    checks.deadline(deadline)
    checks.positive_int("chunk", chunk)
    rt = get_runtime()
    out = BulkResult()
    batch = PreparedBinds()
    sending: list[int] = []  # the chunk on its way to Redis: unknown if it stops meanwhile

    def flush() -> None:
        sending[:] = batch.index
        out.collect(batch.index, commit_prepared(rt, batch.prepared))
        sending.clear()
        batch.prepared.clear()
        batch.index.clear()

    try:
        for i, prepared in prepared_items(
            items, rt, deadline=deadline, callback_url=callback_url, callback_numbers=callback_numbers
        ):
            batch.add(i, prepared, rejected=out.rejected)
            if len(batch.prepared) >= chunk:
                flush()
        if batch.prepared:
            flush()
    except Exception as exc:
        if not out.handles:
            raise  # nothing committed: the error says it all
        raise PartialEnqueueError(out, list(sending), exc) from exc
    return out


def split_item(item: Any, callback_url: str | None = None) -> tuple[Any, Any, Any]:
    """A bulk item: a request, a ``(request, idempotency_key)`` pair or a ``(request,
    idempotency_key, callback_url)`` triple; the batch's ``callback_url`` unless the item has one."""
    if not isinstance(item, tuple):
        return item, None, callback_url
    if len(item) not in (2, 3):
        raise InvalidRequestError.single(
            "item",
            checks.INVALID,
            "must be a request, a (request, idempotency_key) pair or a (request, idempotency_key,"
            " callback_url) triple",
        )
    url = item[2] if len(item) == 3 and item[2] is not None else callback_url
    return item[0], item[1], url


@dataclass
class PreparedBinds:
    """Binds validated by :func:`prepare_binds`, not yet recorded or published."""

    prepared: list[PreparedBind] = field(default_factory=list)
    index: list[int] = field(default_factory=list)
    rejected: list[tuple[int, AxbError]] = field(default_factory=list)

    def add(
        self, i: int, prepared: PreparedBind | AxbError, *, rejected: list[tuple[int, AxbError]] | None = None
    ) -> None:
        """Item ``i``: its prepared row, or its error (into ``rejected``, by default this batch's)."""
        if isinstance(prepared, AxbError):
            (self.rejected if rejected is None else rejected).append((i, prepared))
        else:
            self.prepared.append(prepared)
            self.index.append(i)


def prepare_binds(
    items: Iterable[BindItem],
    *,
    deadline: datetime | None = None,
    callback_url: str | None = None,
    callback_numbers: bool = False,
) -> PreparedBinds:
    """The first half of :func:`enqueue_binds` for one batch: validation, keys and fingerprints.
    Touches no Redis, so a caller may prepare the next batch while the last one is committed."""
    checks.deadline(deadline)
    rt = get_runtime()
    out = PreparedBinds()
    for i, prepared in prepared_items(
        items, rt, deadline=deadline, callback_url=callback_url, callback_numbers=callback_numbers
    ):
        out.add(i, prepared)
    return out


def commit_binds(batch: PreparedBinds) -> BulkResult:
    """The second half: record and publish a prepared batch, as one :func:`enqueue_binds` chunk
    (``rejected`` holds the batch's invalid items, then its idempotency conflicts)."""
    return start_binds(batch).finish()


def start_binds(batch: PreparedBinds) -> PendingBinds:
    """:func:`commit_binds` in two halves: the records' creation goes out to Redis now, and
    :meth:`PendingBinds.finish` takes the answers, publishes and marks. In between, Redis works
    while the caller prepares its next batch."""
    rt = get_runtime()
    pending = rt.store.start_create_many([p.row for p in batch.prepared]) if batch.prepared else None
    return PendingBinds(rt, batch, pending)


@dataclass
class PendingBinds:
    """A prepared batch whose records are being created (see :func:`start_binds`)."""

    rt: Runtime
    batch: PreparedBinds
    creating: PendingCreates | None

    def finish(self) -> BulkResult:
        out = BulkResult(rejected=list(self.batch.rejected))
        if self.creating is not None:
            outcomes = self.creating.result()
            out.collect(self.batch.index, commit_prepared(self.rt, self.batch.prepared, outcomes))
        return out

    def discard(self) -> None:
        """Stop waiting for the answers (the records are created all the same, not published:
        enqueueing the rows again publishes them)."""
        if self.creating is not None:
            self.creating.discard()
