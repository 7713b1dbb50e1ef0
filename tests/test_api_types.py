"""The Python API refuses wrong argument types with InvalidRequestError naming the argument, and
``enqueue_binds`` never commits part of a call without saying exactly which items."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import worker
from worker import PartialEnqueueError, enqueue_bind, enqueue_binds
from worker.errors import InvalidRequestError
from worker.runtime import Runtime


def request(i: int = 0) -> dict[str, Any]:
    expiration = (datetime.now(UTC) + timedelta(hours=20)).strftime("%Y-%m-%d %H:%M:%S")
    return {
        "PoolKey": "FC100000001",
        "PhoneNoA": f"1380003{i:04d}",
        "PhoneNoB": f"1390003{i:04d}",
        "Expiration": expiration,
        "OutId": f"types-{i}",
    }


AWARE = datetime.now(UTC) + timedelta(hours=1)

# (what is called, the argument it gets wrong, the call)
WRONG_TYPES: list[tuple[str, str, Callable[[], Any]]] = [
    ("enqueue_bind", "idempotency_key", lambda: enqueue_bind(request(), idempotency_key=12345)),
    ("enqueue_bind", "idempotency_key", lambda: enqueue_bind(request(), idempotency_key=b"k")),
    ("enqueue_bind", "deadline", lambda: enqueue_bind(request(), deadline="2026-12-01 12:00:00")),
    ("enqueue_bind", "deadline", lambda: enqueue_bind(request(), deadline=date(2026, 12, 1))),
    ("enqueue_bind", "deadline", lambda: enqueue_bind(request(), deadline=1_800_000_000)),
    ("enqueue_bind", "deadline", lambda: enqueue_bind(request(), deadline=datetime(2026, 12, 1))),
    ("enqueue_bind", "request", lambda: enqueue_bind(123)),  # type: ignore[arg-type]
    ("enqueue_bind", "request", lambda: enqueue_bind(["PoolKey"])),  # type: ignore[arg-type]
    ("enqueue_unbind", "key", lambda: worker.enqueue_unbind(123)),  # type: ignore[arg-type]
    ("enqueue_unbind", "pool_key", lambda: worker.enqueue_unbind(subs_id="1", pool_key=5, secret_no="1")),  # type: ignore[arg-type]
    ("enqueue_unbind", "subs_id", lambda: worker.enqueue_unbind(subs_id=[1], pool_key="P", secret_no="1")),  # type: ignore[arg-type]
    ("enqueue_unbind", "secret_no", lambda: worker.enqueue_unbind(subs_id="1", pool_key="P", secret_no=1.5)),  # type: ignore[arg-type]
    ("enqueue_extend", "key", lambda: worker.enqueue_extend(123, "2026-12-01 12:00:00")),  # type: ignore[arg-type]
    ("enqueue_extend", "key", lambda: worker.enqueue_extend(None, "2026-12-01 12:00:00")),  # type: ignore[arg-type]
    ("enqueue_extend", "expiration", lambda: worker.enqueue_extend("types-0", 1_800_000_000)),  # type: ignore[arg-type]
    ("enqueue_binds", "items", lambda: enqueue_binds(5)),  # type: ignore[arg-type]
    ("enqueue_binds", "items", lambda: enqueue_binds(request())),  # type: ignore[arg-type]
    ("enqueue_binds", "items", lambda: enqueue_binds("PoolKey")),  # type: ignore[arg-type]
    ("enqueue_binds", "chunk", lambda: enqueue_binds([request()], chunk="10")),  # type: ignore[arg-type]
    ("enqueue_binds", "chunk", lambda: enqueue_binds([request()], chunk=0)),
    ("enqueue_binds", "deadline", lambda: enqueue_binds([request()], deadline="soon")),  # type: ignore[arg-type]
    ("get_result", "key", lambda: worker.get_result(123)),  # type: ignore[arg-type]
    ("get_op_result", "key", lambda: worker.get_op_result(None)),  # type: ignore[arg-type]
    ("BindHandle.result", "timeout", lambda: enqueue_bind(request(7)).result(timeout="10")),  # type: ignore[arg-type]
    ("BindHandle.result", "timeout", lambda: enqueue_bind(request(7)).result(timeout=float("nan"))),
    ("BindHandle.result", "poll_s", lambda: enqueue_bind(request(7)).result(poll_s=None)),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(
    ("function", "argument", "call"), WRONG_TYPES, ids=[f"{f}-{a}" for f, a, _ in WRONG_TYPES]
)
def test_a_wrong_type_is_an_invalid_request_error_naming_the_argument(
    rt: Runtime, function: str, argument: str, call: Callable[[], Any]
) -> None:
    """No AttributeError or TypeError from inside: the argument is named, and nothing is queued."""
    with pytest.raises(InvalidRequestError) as info:
        call()
    assert info.value.field == argument, (function, str(info.value))
    assert info.value.code == "isv.INVALID_PARAMETERS"
    assert rt.redis.llen(rt.settings.queue) == (1 if function == "BindHandle.result" else 0)


def test_every_public_function_is_in_the_table() -> None:
    """A new public function gets its row in WRONG_TYPES."""
    functions = {name for name in worker.__all__ if name[0].islower()}
    assert functions <= {f for f, _a, _c in WRONG_TYPES}


wrong_values = st.one_of(
    st.integers(),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=8),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.dates(),
    st.just(object()),
)
SLOTS: dict[str, Callable[[Any], Any]] = {
    "idempotency_key": lambda v: enqueue_bind(request(), idempotency_key=v),
    "deadline": lambda v: enqueue_bind(request(), deadline=v),
    "key": worker.enqueue_unbind,
    "expiration": lambda v: worker.enqueue_extend("types-0", v),
    "chunk": lambda v: enqueue_binds([request()], chunk=v),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(slot=st.sampled_from(sorted(SLOTS)), value=wrong_values)
def test_any_wrong_type_in_any_argument_is_refused_by_name(rt: Runtime, slot: str, value: Any) -> None:
    """Whatever the wrong value, the error is InvalidRequestError naming the argument."""
    if slot == "key" and value is None:
        return  # enqueue_unbind(None) is legal without a key: refused for the missing key instead
    if slot == "chunk" and isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        value = -value  # a positive int is a good chunk: make it a bad one
    with pytest.raises(InvalidRequestError) as info:
        SLOTS[slot](value)
    assert info.value.field == slot


def test_a_bad_item_after_a_committed_chunk_is_rejected_and_the_rest_go_on(rt: Runtime) -> None:
    """Issue 11: (request, 12345) after a committed chunk raised AttributeError and lost the
    BulkResult. It is now rejected by index; indices tell which item each handle is for."""
    items: list[Any] = [request(i) for i in range(3)]
    items.append((request(3), 12345))
    items.append((request(4), "k", "too", "long"))
    items.append(request(5))
    res = enqueue_binds(items, chunk=2)
    assert res.indices == [0, 1, 2, 5]
    assert [h.key for h in res.handles] == ["types-0", "types-1", "types-2", "types-5"]
    assert {i: e.field for i, e in res.rejected} == {3: "idempotency_key", 4: "item"}  # type: ignore[attr-defined]


def test_an_iterable_that_fails_part_way_raises_with_exactly_what_was_committed(rt: Runtime) -> None:
    """The committed chunks come back in PartialEnqueueError.result; nothing else was recorded."""

    def items() -> Iterator[Any]:
        yield from (request(i) for i in range(4))
        yield (request(4), None)  # prepared, never sent: the iterable breaks before its chunk is full
        raise RuntimeError("the order system's cursor broke")

    with pytest.raises(PartialEnqueueError) as info:
        enqueue_binds(items(), chunk=2)
    err = info.value
    assert err.result.indices == [0, 1, 2, 3] and err.uncertain == []
    assert isinstance(err.__cause__, RuntimeError) and "cursor broke" in str(err)
    recorded = [rt.store.get(f"types-{i}") is not None for i in range(6)]
    assert recorded == [True, True, True, True, False, False]
    assert rt.redis.llen(rt.settings.queue) > 0


def test_an_iterable_that_fails_before_any_commit_raises_its_own_error(rt: Runtime) -> None:
    """Nothing committed: the caller gets the original error and nothing is recorded."""

    def items() -> Iterator[Any]:
        yield request(0)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        enqueue_binds(items(), chunk=10)
    assert rt.redis.dbsize() == 0
