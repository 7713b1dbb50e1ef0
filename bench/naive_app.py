"""Baseline (a): the BindAxb task teams write today, for ``python -m bench`` to measure against.

The official SDK (``aliyun-python-sdk-core``) called from a plain Celery task with
``autoretry_for`` and ``retry_backoff``; one ``AcsClient`` per process (module level, with the
SDK's defaults: its own retries on, a connection pool per client); Celery's defaults otherwise
(prefetch 4, early acks, results in the Redis backend, which is where teams read the
``SecretBindDTO`` back). Run it as teams do::

    celery -A bench.naive_app worker --pool prefork --concurrency 8

Configured from the environment so the benchmark can point it at its private Redis and simulator:
``BENCH_REDIS_URL``, ``BENCH_NAIVE_QUEUE``, ``BENCH_DYPLS_DOMAIN`` (``host:port`` of the simulator;
the SDK talks plain HTTP to it), ``AXB_ACCESS_KEY_ID`` / ``AXB_ACCESS_KEY_SECRET``.

There is no validation, no rate limit, no deduplication (a redelivered or re-sent message binds
again) and no dead letters: that is the point of the comparison.
"""

from __future__ import annotations

import json
import os
from typing import Any

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from celery import Celery

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("BENCH_NAIVE_QUEUE", "naive.bind")
DOMAIN = os.environ.get("BENCH_DYPLS_DOMAIN", "dyplsapi.aliyuncs.com")

app = Celery("naive", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(task_default_queue=QUEUE, broker_connection_retry_on_startup=True)

client = AcsClient(
    os.environ.get("AXB_ACCESS_KEY_ID", "test-access-key-id"),
    os.environ.get("AXB_ACCESS_KEY_SECRET", "test-access-key-secret"),
    "cn-hangzhou",
)


@app.task(
    name="naive.bind_axb",
    autoretry_for=(ClientException, ServerException),
    retry_backoff=True,
    max_retries=5,
)
def bind_axb(pool_key: str, phone_no_a: str, phone_no_b: str, expiration: str, out_id: str) -> Any:
    request = CommonRequest(domain=DOMAIN, version="2017-05-25", action_name="BindAxb")
    request.set_method("POST")
    request.set_protocol_type("http" if ":" in DOMAIN else "https")
    request.add_query_param("PoolKey", pool_key)
    request.add_query_param("PhoneNoA", phone_no_a)
    request.add_query_param("PhoneNoB", phone_no_b)
    request.add_query_param("Expiration", expiration)
    request.add_query_param("OutId", out_id)
    return json.loads(client.do_action_with_exception(request))
