"""One settings class for the whole service, read from ``AXB_*`` environment variables.

Units are in the names (``_s``, ``_ms``, ``_qps``). The AccessKey secret is a ``SecretStr``:
it is never logged, printed or put into any repr.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_liveness_dir() -> str:
    import os
    import tempfile

    return os.path.join(tempfile.gettempdir(), f"axb-worker-alive-{os.getuid()}")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AXB_", extra="ignore")

    # --- connections -------------------------------------------------------------------------
    # Redis: ``redis://``, ``rediss://`` (TLS) or Celery's Sentinel form
    # ``sentinel://[:password@]host:port;sentinel://host:port/DB`` (see worker/connections.py).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The primary's name in Sentinel (``sentinel monitor <name> ...``); Sentinel URLs only.
    redis_master_name: str = "mymaster"
    # The sentinels' own password (``requirepass`` in sentinel.conf), if they have one; the
    # password in the URL is the data nodes' (as Celery takes it).
    redis_sentinel_password: SecretStr | None = None
    # TLS (``rediss://``): the CA bundle that signed the server's certificate (default: the
    # system's); ``ssl_ca_certs=`` in the URL's query does the same.
    redis_ca_file: str | None = None
    # A failed Redis command is retried (reconnecting, through Sentinel to the current
    # primary) for about this long: it must outlast a failover (down-after-milliseconds plus
    # the election, a few seconds to half a minute).
    redis_retry_s: float = Field(default=30.0, ge=0)
    # WAIT numreplicas timeout: records are acknowledged by this many replicas before a
    # producer call returns, before a vendor call goes out and before a message is acked
    # (worker/replication.py). 0: off. Unset: 1 with a Sentinel URL, else 0.
    redis_wait_replicas: int | None = Field(default=None, ge=0)
    redis_wait_timeout_ms: int = Field(default=1000, ge=1)
    endpoint: str = "https://dyplsapi.aliyuncs.com"
    access_key_id: str = "test-access-key-id"
    access_key_secret: SecretStr = SecretStr("test-access-key-secret")
    signature: Literal["v1", "v3"] = "v3"
    region_id: str = "cn-hangzhou"
    connect_timeout_s: float = Field(default=2.0, gt=0)
    read_timeout_s: float = Field(default=5.0, gt=0)
    # Connections each thread's own vendor client may keep (worker.vendor.client: one pool per thread).
    http_pool_size: int = Field(default=100, ge=1)

    # --- pipeline ----------------------------------------------------------------------------
    queue: str = "axb.bind"
    rate_limit_qps: float = Field(default=500.0, gt=0)
    rate_limit_burst: int = Field(default=10, ge=1)
    # Per-pool limits, e.g. ``FC100000001=50,FC100000002=20``.
    pool_rate_limits: str = ""
    max_attempts: int = Field(default=8, ge=1)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    no_number_backoff_initial_s: float = Field(default=15.0, gt=0)
    no_number_backoff_max_s: float = Field(default=300.0, gt=0)
    # Bulk enqueues (enqueue_binds, axb backfill) and the delay queue carry up to this many bind
    # keys per Celery message (task ``axb.bind_many``); 1 sends one message per key. Each key
    # still has its own record, lease, retries, result and dead letter.
    batch_size: int = Field(default=20, ge=1, le=500)
    # Waits up to this long happen inside the task; longer ones go to the delay queue.
    inline_wait_max_s: float = Field(default=1.0, ge=0)
    soft_time_limit_s: float = Field(default=25.0, gt=0)
    hard_time_limit_s: float = Field(default=30.0, gt=0)
    visibility_timeout_s: float = Field(default=90.0, gt=0)
    # An unanswered signed request may be replayed (same nonce) for this long; the vendor
    # keeps nonces for 15 minutes and rejects timestamps 15 minutes off.
    replay_window_s: float = Field(default=600.0, gt=0)
    # What follows when a bind's first copy may have bound and its answer was lost
    # (worker/execution/ambiguous.py): ``dead_letter`` (axb.AMBIGUOUS_OUTCOME, for a person to
    # reconcile) or ``rebind`` (signed afresh and sent again). Either way the first copy goes
    # into the possible-orphans ledger (worker/orphans.py).
    on_ambiguous: Literal["dead_letter", "rebind"] = "dead_letter"
    # The hold (worker/execution/hold.py). After an account-level refusal (bad credentials, closed
    # account), the cluster holds its calls this long, then lets calls through again
    # (AXB_ACCOUNT_HALT_S, the old name, is still read).
    account_hold_s: float = Field(
        default=60.0, gt=0, validation_alias=AliasChoices("AXB_ACCOUNT_HOLD_S", "AXB_ACCOUNT_HALT_S")
    )
    # The vendor hold opens when, over the last vendor_hold_window_s across the cluster, at least
    # vendor_hold_min_failures calls failed (unreachable, reset, timed out, HTTP 5xx) and they
    # were at least vendor_hold_failure_ratio of all calls. Then one probe call goes out every
    # vendor_probe_every_s; its first answer releases every held key at once. Held keys also
    # look again every vendor_hold_recheck_s (a safety net).
    vendor_hold_window_s: int = Field(default=10, ge=1)
    vendor_hold_min_failures: int = Field(default=5, ge=1)
    vendor_hold_failure_ratio: float = Field(default=0.5, gt=0, le=1)
    vendor_probe_every_s: float = Field(default=1.0, gt=0)
    vendor_hold_recheck_s: float = Field(default=30.0, gt=0)
    result_ttl_extra_s: int = Field(default=86_400, ge=0)
    # Every accepted key is watched until it finishes. A key with no message anywhere (not on
    # the queue, not unacknowledged, not delayed, not leased) this long after it was accepted
    # or last seen is published again: a message lost between Redis and a killed worker, or a
    # producer that died between recording and publishing, cannot strand a bind.
    watchdog_s: float = Field(default=60.0, gt=0)
    # Celery remote control (inspect/ping/revoke); off because it can stall a worker for good
    # after a Redis restart (see worker/celery_app.py).
    remote_control: bool = False
    # Celery task events (for Flower, `celery events`); off by default because they cost
    # throughput. On, the worker also sends worker-online and a worker-heartbeat every 2 s.
    task_events: bool = False
    # The liveness heartbeat (worker/queue/liveness.py): each worker process's consumer loop
    # touches a file in this directory every AXB_LIVENESS_INTERVAL_S; `axb worker-alive` fails
    # when one is older than its --max-age-s. Default: <temp dir>/axb-worker-alive-<uid>.
    liveness_dir: str = Field(default_factory=_default_liveness_dir)
    liveness_interval_s: float = Field(default=5.0, gt=0)
    worker_pool: Literal["threads", "prefork", "solo", "gevent", "eventlet"] = "threads"
    worker_concurrency: int = Field(default=32, ge=1)
    # Worker processes of ``axb worker``; 0: one per core (threads pool, no --pool / -c given).
    worker_processes: int = Field(default=0, ge=0)

    # --- completion callbacks (worker.callbacks) -----------------------------------------------
    # Signs every callback POST (X-Axb-Signature); never logged.
    callback_secret: SecretStr = SecretStr("")
    # Lets callback URLs point at loopback, link-local and private addresses (tests, on-prem).
    callback_allow_private: bool = False
    # A delivery that keeps failing is retried for this long, then dead-lettered.
    callback_max_age_s: float = Field(default=86_400.0, gt=0)
    callback_timeout_s: float = Field(default=5.0, gt=0)
    callback_backoff_initial_s: float = Field(default=1.0, gt=0)
    callback_backoff_max_s: float = Field(default=600.0, gt=0)
    # A CA bundle (PEM) to trust for https callback receivers besides the public ones' CAs
    # (certifi), e.g. an internal CA; unset: public CAs only.
    callback_ca_file: str | None = None
    # Worker slots (per process) that deliveries may take at once; the rest stay for binds.
    callback_concurrency: int = Field(default=4, ge=1)

    # --- personal data at rest (worker.sealing, worker.deadletters) ------------------------------
    # One or more comma-separated keys (32 random bytes, URL-safe base64); the first seals, all
    # unseal. Unset: phone numbers and signed requests are stored in plaintext.
    data_key: SecretStr | None = None
    # Dead letters keep their personal data this long, then are removed (audited, counted).
    dlq_retention_days: float = Field(default=30.0, gt=0)
    # How often one worker of the cluster looks for dead letters past their retention.
    dlq_retention_sweep_s: float = Field(default=60.0, gt=0)

    # --- the HTTP API (axb api) ----------------------------------------------------------------
    # Requests per second per token (GCRA in Redis, shared by every API process); a batch call
    # counts as one request. Over it: 429 with Retry-After.
    api_rate_limit_qps: float = Field(default=1000.0, gt=0)
    api_rate_limit_burst: int = Field(default=200, ge=1)
    # Request bodies above this are refused with 413 before they are read whole.
    api_max_body_bytes: int = Field(default=2_000_000, ge=1024)
    # How long an API request rides out a Redis outage or failover before it answers 503 with
    # Retry-After (the API's processes use the smaller of this and AXB_REDIS_RETRY_S): an order
    # system would rather retry with its Idempotency-Key than hold a connection for 30 s.
    api_redis_retry_s: float = Field(default=5.0, ge=0)
    # The on-call console (/console): a login lasts this long (the session lives in Redis).
    console_session_s: int = Field(default=8 * 3600, ge=60)

    # --- observability -----------------------------------------------------------------------
    sentry_dsn: SecretStr | None = None
    sentry_environment: str = "production"
    metrics_port: int | None = None
    log_level: str = "INFO"
    log_json: bool = False

    @field_validator("endpoint")
    @classmethod
    def _endpoint_has_scheme(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            return "https://" + v
        return v.rstrip("/")

    @field_validator("on_ambiguous", mode="before")
    @classmethod
    def _on_ambiguous_is_a_policy(cls, v: object) -> object:
        text = str(v).strip().lower().replace("-", "_")
        if text not in ("dead_letter", "rebind"):
            raise ValueError(f"AXB_ON_AMBIGUOUS must be dead_letter or rebind, not {str(v)[:40]!r}")
        return text

    @property
    def batch_budget_s(self) -> float:
        """How long a many-key message may start new keys: what is left when it runs out is
        published again, so a message is held well inside the soft time limit."""
        return max(
            1.0,
            self.soft_time_limit_s - self.read_timeout_s - self.connect_timeout_s - self.inline_wait_max_s,
        )

    def pool_limits(self) -> dict[str, float]:
        """Parse ``pool_rate_limits`` into ``{pool_key: qps}``."""
        out: dict[str, float] = {}
        for part in self.pool_rate_limits.split(","):
            if not part.strip():
                continue
            pool, _, qps = part.partition("=")
            out[pool.strip()] = float(qps)
        return out

    def secret(self) -> str:
        return self.access_key_secret.get_secret_value()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    get_settings.cache_clear()
