"""Settings: read from the environment once, frozen, passed down explicitly."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import msgspec

T = TypeVar("T")

Backend = Literal["claude", "local", "simulated"]
Durability = Literal["fast", "strict"]
RedisMode = Literal["standalone", "cluster", "sentinel"]
TraceExporter = Literal["otlp", "console"]

MAX_PARTITIONS = 256
"""Enough for a cluster of 256 primaries; partition tags are found at start in ~N² slot checks."""


MAX_WAIT_S = 60
"""The longest long-poll (``?wait=``) the gateway allows."""
MAX_BATCH_SCANS = 1000
"""A batch is accepted by one Lua call whose arguments Lua unpacks (8,000 at most)."""


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


class Secret(str):
    """A string that never prints its value."""

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    @property
    def value(self) -> str:
        """The real value, for the one place that needs it."""
        return str.__str__(self)


class Price(msgspec.Struct, frozen=True, kw_only=True):
    """USD per million tokens of each kind, for ``labelscan_anthropic_cost_usd_total``."""

    input: float
    output: float
    cache_read: float
    cache_creation: float


# Anthropic's list prices (USD per million tokens); ANTHROPIC_PRICES replaces the table.
DEFAULT_PRICES: tuple[tuple[str, Price], ...] = (
    ("claude-opus-4-5", Price(input=5, output=25, cache_read=0.5, cache_creation=6.25)),
    ("claude-opus-4", Price(input=15, output=75, cache_read=1.5, cache_creation=18.75)),
    ("claude-sonnet-4", Price(input=3, output=15, cache_read=0.3, cache_creation=3.75)),
    ("claude-haiku-4", Price(input=1, output=5, cache_read=0.1, cache_creation=1.25)),
)


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of every service. Built by :meth:`from_env`; see README for each."""

    redis_url: str = "redis://localhost:6379/0"
    redis_mode: RedisMode = "standalone"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = ""
    prefix: str = "labelscan"
    partitions: int = 1
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    notifier_host: str = "127.0.0.1"
    notifier_port: int = 8001
    public_gateway_url: str = ""
    public_notifier_url: str = ""
    worker_concurrency: int = 2
    anthropic_api_key: Secret | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-sonnet-4-6"
    anthropic_max_tokens: int = 4096
    anthropic_timeout_s: float = 120.0
    analyzer_backend: Backend = "claude"
    simulated_delay_ms: int = 0
    max_image_bytes: int = 10 * 1024 * 1024
    max_body_bytes: int = 15 * 1024 * 1024
    image_ttl_s: int = 24 * 3600
    result_ttl_s: int = 7 * 24 * 3600
    events_maxlen: int = 100_000
    events_retention_s: int = 3600
    scan_events_maxlen: int = 1_000
    fetch_timeout_s: float = 15.0
    image_url_allow_http: bool = False
    image_url_allow_hosts: tuple[str, ...] = ()
    image_fetch_max_redirects: int = 3
    sse_heartbeat_s: float = 15.0
    sse_retry_ms: int = 2_000
    sse_queue_size: int = 256
    sse_max_streams_per_tenant: int = 100
    sse_max_replay: int = 2_000
    http_max_header_bytes: int = 16 * 1024
    http_max_headers: int = 100
    http_header_timeout_s: float = 10.0
    cors_origins: tuple[str, ...] = ("*",)
    durability: Durability = "fast"
    max_attempts: int = 5
    retry_base_s: float = 2.0
    retry_cap_s: float = 300.0
    visibility_timeout_s: float = 60.0
    shutdown_grace_s: float = 30.0
    idempotency_ttl_s: int = 24 * 3600
    dead_maxlen: int = 10_000
    analyzer_health_host: str = "127.0.0.1"
    analyzer_health_port: int | None = 8002
    """None: no health endpoint; 0: any free port (logged at start)."""
    liveness_timeout_s: float = 30.0
    redis_timeout_s: float = 5.0
    anthropic_rpm: int = 0
    anthropic_input_tpm: int = 0
    anthropic_output_tpm: int = 0
    anthropic_output_estimate: int = 1500
    anthropic_prompt_tokens: int = 4000
    anthropic_batch_low_priority: bool = False
    """Low-priority Claude scans go to the Message Batches API (half price, slower)."""
    anthropic_batch_max: int = 100
    """Requests per Message Batch at most (the API takes up to 100,000)."""
    anthropic_batch_window_s: float = 30.0
    """How long the first collected scan waits for others before its batch is sent."""
    anthropic_batch_poll_s: float = 10.0
    """First wait before a sent batch is polled; doubles per poll up to the maximum."""
    anthropic_batch_poll_max_s: float = 300.0
    anthropic_batch_lease_s: float = 60.0
    """A replica that stops renewing a batch's lease for this long loses it to another."""
    tenant_max_active: int = 0
    auth: bool = True
    api_keys: tuple[tuple[str, Secret], ...] = ()
    api_keys_file: str | None = None
    admin_tenants: tuple[str, ...] = ("admin",)
    event_keys: tuple[Secret, ...] = ()
    event_token_ttl_s: int = 3600
    tenant_rps: float = 20.0
    tenant_scans_per_day: int = 0
    log_level: str = "INFO"
    log_json: bool | None = None
    metrics: bool = True
    metrics_token: Secret | None = None
    metrics_tenant_labels: bool = False
    metrics_queue_cache_s: float = 5.0
    anthropic_prices: tuple[tuple[str, Price], ...] = DEFAULT_PRICES
    """USD per million tokens by model name prefix; the longest matching prefix wins."""
    tracing: bool = False
    """OpenTelemetry traces on: an exporter or an OTLP endpoint is configured (see README)."""
    trace_exporters: tuple[TraceExporter, ...] = ()
    """Where spans go when ``tracing``: the SDK reads each exporter's own OTEL_* settings."""
    scan_index_max: int = 100_000
    """Most scans one listing index keeps per partition (GET /api/scans); the oldest go first."""
    scan_wait_max: int = 1_000
    """Most requests one gateway process holds in a long-poll (``?wait=``) at once."""
    scan_wait_limit_s: int = MAX_WAIT_S
    """Longest ``?wait=`` a client may ask for (a proxy's idle timeout may call for less)."""
    batch_max_scans: int = 500
    """Scans one ``POST /api/batches`` may carry (at most MAX_BATCH_SCANS)."""
    batch_max_body_bytes: int = 32 * 1024 * 1024
    """Cap on a batch request's body (the scans' own cap is ``max_body_bytes``)."""
    webhook_delivery: bool = True
    """This notifier also delivers webhooks (its outbox consumer and sender)."""
    webhook_concurrency: int = 16
    webhook_timeout_s: float = 10.0
    webhook_retry_hours: float = 24.0
    webhook_retry_base_s: float = 5.0
    webhook_retry_cap_s: float = 3600.0
    webhook_disable_after_hours: float = 24.0
    webhook_rotation_grace_s: int = 24 * 3600
    webhook_allow_hosts: tuple[str, ...] = ()
    webhook_presence_cache_s: float = 5.0
    webhook_max_endpoints: int = 20

    def price_of(self, model: str) -> Price | None:
        """The price of ``model`` (longest matching prefix), or None if unknown."""
        best: tuple[str, Price] | None = None
        for prefix, price in self.anthropic_prices:
            if model.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
                best = (prefix, price)
        return best[1] if best is not None else None

    @property
    def rate_limited(self) -> bool:
        """Whether any global API limit is configured."""
        return bool(self.anthropic_rpm or self.anthropic_input_tpm or self.anthropic_output_tpm)

    @property
    def redis_url_for_logs(self) -> str:
        """``redis_url`` with any password masked: safe to log or print."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        user = f"{parts.username}:" if parts.username else ":"
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))

    @property
    def gateway_url(self) -> str:
        """Base URL clients use to reach the gateway."""
        return self.public_gateway_url or f"http://{self.gateway_host}:{self.gateway_port}"

    @property
    def notifier_url(self) -> str:
        """Base URL browsers use to reach the notifier."""
        return self.public_notifier_url or f"http://{self.notifier_host}:{self.notifier_port}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from ``env`` (default: ``os.environ``); SettingsError if malformed."""
        e = os.environ if env is None else env
        r = _Reader(e)
        d = cls()
        api_key = r.get("ANTHROPIC_API_KEY", str, None)
        # No API key: the offline backend still does the main job (never "simulated").
        backend: Backend = r.get(
            "ANALYZER_BACKEND",
            _choice("claude", "local", "simulated"),  # type: ignore[arg-type]
            "claude" if api_key else "local",
        )
        settings = cls(
            redis_url=r.get("REDIS_URL", _redis_url, d.redis_url),
            redis_mode=r.get(
                "REDIS_MODE",
                _choice("standalone", "cluster", "sentinel"),  # type: ignore[arg-type]
                d.redis_mode,
            ),
            redis_sentinels=r.get("REDIS_SENTINELS", _host_ports, ()),
            redis_sentinel_master=r.get("REDIS_SENTINEL_MASTER", _sentinel_master, ""),
            prefix=r.get("LABELSCAN_PREFIX", _prefix, d.prefix),
            partitions=r.get("SCAN_PARTITIONS", _partitions, d.partitions),
            gateway_host=r.get("GATEWAY_HOST", str, d.gateway_host),
            gateway_port=r.get("GATEWAY_PORT", _port, d.gateway_port),
            notifier_host=r.get("NOTIFIER_HOST", str, d.notifier_host),
            notifier_port=r.get("NOTIFIER_PORT", _port, d.notifier_port),
            public_gateway_url=r.get("PUBLIC_GATEWAY_URL", _url, d.public_gateway_url),
            public_notifier_url=r.get("PUBLIC_NOTIFIER_URL", _url, d.public_notifier_url),
            worker_concurrency=r.get("SCAN_WORKER_CONCURRENCY", _positive, d.worker_concurrency),
            anthropic_api_key=Secret(api_key) if api_key else None,
            anthropic_base_url=r.get("ANTHROPIC_BASE_URL", _url, None) or None,
            anthropic_model=r.get("ANTHROPIC_MODEL", str, d.anthropic_model),
            anthropic_max_tokens=r.get("ANTHROPIC_MAX_TOKENS", _positive, d.anthropic_max_tokens),
            anthropic_timeout_s=r.get("ANTHROPIC_TIMEOUT", _positive_float, d.anthropic_timeout_s),
            analyzer_backend=backend,
            simulated_delay_ms=r.get("SIMULATED_DELAY_MS", _non_negative, d.simulated_delay_ms),
            max_image_bytes=r.get("SCAN_MAX_IMAGE_BYTES", _positive, d.max_image_bytes),
            max_body_bytes=r.get("SCAN_MAX_BODY_BYTES", _positive, d.max_body_bytes),
            image_ttl_s=r.get("SCAN_IMAGE_TTL", _positive, d.image_ttl_s),
            result_ttl_s=r.get("SCAN_RESULT_TTL", _positive, d.result_ttl_s),
            events_maxlen=r.get("EVENTS_MAXLEN", _positive, d.events_maxlen),
            events_retention_s=r.get("EVENTS_RETENTION", _positive, d.events_retention_s),
            scan_events_maxlen=r.get("SCAN_EVENTS_MAXLEN", _positive, d.scan_events_maxlen),
            fetch_timeout_s=r.get("IMAGE_FETCH_TIMEOUT", _positive_float, d.fetch_timeout_s),
            image_url_allow_http=r.get("IMAGE_URL_ALLOW_HTTP", _bool, d.image_url_allow_http),
            image_url_allow_hosts=r.get("IMAGE_URL_ALLOW_HOSTS", _hosts, ()),
            image_fetch_max_redirects=r.get(
                "IMAGE_FETCH_MAX_REDIRECTS", _non_negative, d.image_fetch_max_redirects
            ),
            sse_heartbeat_s=r.get("SSE_HEARTBEAT", _positive_float, d.sse_heartbeat_s),
            sse_retry_ms=r.get("SSE_RETRY_MS", _positive, d.sse_retry_ms),
            sse_queue_size=r.get("SSE_QUEUE_SIZE", _positive, d.sse_queue_size),
            sse_max_streams_per_tenant=r.get(
                "SSE_MAX_STREAMS_PER_TENANT", _positive, d.sse_max_streams_per_tenant
            ),
            sse_max_replay=r.get("SSE_MAX_REPLAY", _positive, d.sse_max_replay),
            http_max_header_bytes=r.get(
                "HTTP_MAX_HEADER_BYTES", _at_least(1024), d.http_max_header_bytes
            ),
            http_max_headers=r.get("HTTP_MAX_HEADERS", _at_least(16), d.http_max_headers),
            http_header_timeout_s=r.get(
                "HTTP_HEADER_TIMEOUT", _positive_float, d.http_header_timeout_s
            ),
            cors_origins=r.get("CORS_ORIGINS", _origins, d.cors_origins),
            durability=r.get("SCAN_DURABILITY", _choice("fast", "strict"), d.durability),  # type: ignore[arg-type]
            max_attempts=r.get("SCAN_MAX_ATTEMPTS", _positive, d.max_attempts),
            retry_base_s=r.get("SCAN_RETRY_BASE", _positive_float, d.retry_base_s),
            retry_cap_s=r.get("SCAN_RETRY_CAP", _positive_float, d.retry_cap_s),
            visibility_timeout_s=r.get(
                "SCAN_VISIBILITY_TIMEOUT", _positive_float, d.visibility_timeout_s
            ),
            shutdown_grace_s=r.get("SCAN_SHUTDOWN_GRACE", _non_negative_float, d.shutdown_grace_s),
            idempotency_ttl_s=r.get("IDEMPOTENCY_TTL", _positive, d.idempotency_ttl_s),
            dead_maxlen=r.get("DEAD_LETTERS_MAXLEN", _positive, d.dead_maxlen),
            analyzer_health_host=r.get("ANALYZER_HEALTH_HOST", str, d.analyzer_health_host),
            analyzer_health_port=r.get(
                "ANALYZER_HEALTH_PORT", _port_or_off, d.analyzer_health_port
            ),
            liveness_timeout_s=r.get(
                "SCAN_LIVENESS_TIMEOUT", _positive_float, d.liveness_timeout_s
            ),
            redis_timeout_s=r.get("REDIS_SOCKET_TIMEOUT", _positive_float, d.redis_timeout_s),
            anthropic_rpm=r.get("ANTHROPIC_RPM", _non_negative, d.anthropic_rpm),
            anthropic_input_tpm=r.get("ANTHROPIC_INPUT_TPM", _non_negative, d.anthropic_input_tpm),
            anthropic_output_tpm=r.get(
                "ANTHROPIC_OUTPUT_TPM", _non_negative, d.anthropic_output_tpm
            ),
            anthropic_output_estimate=r.get(
                "ANTHROPIC_OUTPUT_ESTIMATE", _positive, d.anthropic_output_estimate
            ),
            anthropic_prompt_tokens=r.get(
                "ANTHROPIC_PROMPT_TOKENS", _positive, d.anthropic_prompt_tokens
            ),
            anthropic_batch_low_priority=r.get(
                "ANTHROPIC_BATCH_LOW_PRIORITY", _bool, d.anthropic_batch_low_priority
            ),
            anthropic_batch_max=r.get("ANTHROPIC_BATCH_MAX", _batch_max, d.anthropic_batch_max),
            anthropic_batch_window_s=r.get(
                "ANTHROPIC_BATCH_WINDOW", _positive_float, d.anthropic_batch_window_s
            ),
            anthropic_batch_poll_s=r.get(
                "ANTHROPIC_BATCH_POLL", _positive_float, d.anthropic_batch_poll_s
            ),
            anthropic_batch_poll_max_s=r.get(
                "ANTHROPIC_BATCH_POLL_MAX", _positive_float, d.anthropic_batch_poll_max_s
            ),
            anthropic_batch_lease_s=r.get(
                "ANTHROPIC_BATCH_LEASE", _positive_float, d.anthropic_batch_lease_s
            ),
            tenant_max_active=r.get("SCAN_TENANT_MAX_ACTIVE", _non_negative, d.tenant_max_active),
            auth=r.get("LABELSCAN_AUTH", _bool, d.auth),
            api_keys=r.get("LABELSCAN_API_KEYS", _api_keys, d.api_keys),
            api_keys_file=r.get("LABELSCAN_API_KEYS_FILE", str, None),
            admin_tenants=r.get("LABELSCAN_ADMIN_TENANTS", _names, d.admin_tenants),
            event_keys=r.get("LABELSCAN_EVENT_KEYS", _secrets, d.event_keys),
            event_token_ttl_s=r.get("LABELSCAN_EVENT_TOKEN_TTL", _positive, d.event_token_ttl_s),
            tenant_rps=r.get("LABELSCAN_TENANT_RPS", _non_negative_float, d.tenant_rps),
            tenant_scans_per_day=r.get(
                "LABELSCAN_TENANT_SCANS_PER_DAY", _non_negative, d.tenant_scans_per_day
            ),
            log_level=r.get("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            log_json=r.get("LOG_JSON", _bool, None),
            metrics=r.get("METRICS", _bool, d.metrics),
            metrics_token=r.get("METRICS_TOKEN", _token, None),
            metrics_tenant_labels=r.get("METRICS_TENANT_LABELS", _bool, d.metrics_tenant_labels),
            metrics_queue_cache_s=r.get(
                "METRICS_QUEUE_CACHE", _non_negative_float, d.metrics_queue_cache_s
            ),
            anthropic_prices=r.get("ANTHROPIC_PRICES", _prices, d.anthropic_prices),
            scan_index_max=r.get("SCAN_INDEX_MAX", _positive, d.scan_index_max),
            scan_wait_max=r.get("SCAN_WAIT_MAX", _positive, d.scan_wait_max),
            scan_wait_limit_s=r.get(
                "SCAN_WAIT_LIMIT", _between(1, MAX_WAIT_S), d.scan_wait_limit_s
            ),
            batch_max_scans=r.get(
                "BATCH_MAX_SCANS", _between(1, MAX_BATCH_SCANS), d.batch_max_scans
            ),
            batch_max_body_bytes=r.get("BATCH_MAX_BODY_BYTES", _positive, d.batch_max_body_bytes),
            **_tracing(r),
            **_webhooks(r, d),
        )
        if settings.max_body_bytes < settings.max_image_bytes:
            raise SettingsError("SCAN_MAX_BODY_BYTES must be at least SCAN_MAX_IMAGE_BYTES")
        _check_redis_mode(settings, url_given=bool(e.get("REDIS_URL", "").strip()))
        return settings


def _webhooks(r: _Reader, d: Settings) -> dict[str, Any]:
    return {
        "webhook_delivery": r.get("WEBHOOK_DELIVERY", _bool, d.webhook_delivery),
        "webhook_concurrency": r.get("WEBHOOK_CONCURRENCY", _positive, d.webhook_concurrency),
        "webhook_timeout_s": r.get("WEBHOOK_TIMEOUT", _positive_float, d.webhook_timeout_s),
        "webhook_retry_hours": r.get("WEBHOOK_RETRY_HOURS", _positive_float, d.webhook_retry_hours),
        "webhook_retry_base_s": r.get(
            "WEBHOOK_RETRY_BASE", _positive_float, d.webhook_retry_base_s
        ),
        "webhook_retry_cap_s": r.get("WEBHOOK_RETRY_CAP", _positive_float, d.webhook_retry_cap_s),
        "webhook_disable_after_hours": r.get(
            "WEBHOOK_DISABLE_AFTER_HOURS", _positive_float, d.webhook_disable_after_hours
        ),
        "webhook_rotation_grace_s": r.get(
            "WEBHOOK_ROTATION_GRACE", _non_negative, d.webhook_rotation_grace_s
        ),
        "webhook_allow_hosts": r.get("WEBHOOK_ALLOW_HOSTS", _hosts, d.webhook_allow_hosts),
        "webhook_presence_cache_s": r.get(
            "WEBHOOK_PRESENCE_CACHE", _non_negative_float, d.webhook_presence_cache_s
        ),
        "webhook_max_endpoints": r.get("WEBHOOK_MAX_ENDPOINTS", _positive, d.webhook_max_endpoints),
    }


def _tracing(r: _Reader) -> dict[str, Any]:
    """Whether traces are on, from the standard variables the OpenTelemetry SDK reads.

    The OTel spec's default exporter is ``otlp``, but a service nobody pointed at a
    collector would then retry exports to localhost forever: here tracing is on only
    when ``OTEL_TRACES_EXPORTER`` names an exporter or an OTLP endpoint is set.
    """
    if r.get("OTEL_SDK_DISABLED", _bool, False):
        return {"tracing": False, "trace_exporters": ()}
    endpoint = r.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", _url, "") or r.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT", _url, ""
    )
    exporters = r.get("OTEL_TRACES_EXPORTER", _trace_exporters, None)
    if exporters is None:
        exporters = ("otlp",) if endpoint else ()
    return {"tracing": bool(exporters), "trace_exporters": exporters}


def _trace_exporters(raw: str) -> tuple[TraceExporter, ...]:
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    if not names or any(n not in ("otlp", "console") for n in names):
        raise ValueError("must be otlp, console, both comma-separated, or none")
    return tuple(dict.fromkeys(cast(TraceExporter, n) for n in names))


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str, parse: Callable[[str], T], default: T) -> T:
        raw = self._env.get(name)
        if raw is None or raw == "":
            return default
        try:
            return parse(raw.strip())
        except (ValueError, TypeError) as exc:
            raise SettingsError(f"{name}={raw!r} is invalid: {exc}") from None


def _positive(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _partitions(raw: str) -> int:
    value = int(raw)
    if not 1 <= value <= MAX_PARTITIONS:
        raise ValueError(f"must be 1..{MAX_PARTITIONS}")
    return value


def _between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(f"must be {low}..{high}")
        return value

    return parse


def _at_least(low: int) -> Callable[[str], int]:
    # Below these a browser's ordinary request (cookies, a token in the URL) is refused.
    def parse(raw: str) -> int:
        value = int(raw)
        if value < low:
            raise ValueError(f"must be at least {low}")
        return value

    return parse


def _non_negative(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
        raise ValueError("must be a positive number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _port_or_off(raw: str) -> int | None:
    # 0 asks the OS for any free port (several analyzers on one host); "off" serves nothing.
    if raw.lower() == "off":
        return None
    try:
        return 0 if raw == "0" else _port(raw)
    except ValueError:
        raise ValueError("must be a TCP port (1-65535), 0 (any free port) or off") from None


def _port(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 65536:
        raise ValueError("must be a TCP port (1-65535)")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return raw

    return parse


def _redis_url(raw: str) -> str:
    if not raw.startswith(("redis://", "rediss://", "unix://", "valkey://", "valkeys://")):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return raw.replace("valkey", "redis", 1) if raw.startswith("valkey") else raw


def _host_ports(raw: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        host, sep, port = item.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:26379
        if not sep or not host or any(c in host for c in "/@ ") or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        pairs.append((host, _port(port)))
    if not pairs:
        raise ValueError("expected host:port,host:port,...")
    return tuple(pairs)


def _sentinel_master(raw: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", raw):
        raise ValueError("must be the master's name as the sentinels know it ([A-Za-z0-9_.-])")
    return raw


def _check_redis_mode(settings: Settings, *, url_given: bool) -> None:
    """Refuse combinations of REDIS_MODE, REDIS_URL and the sentinel settings that cannot work."""
    mode = settings.redis_mode
    url = settings.redis_url
    if mode != "sentinel" and (settings.redis_sentinels or settings.redis_sentinel_master):
        raise SettingsError(
            f"REDIS_SENTINELS/REDIS_SENTINEL_MASTER are set but REDIS_MODE={mode}; "
            "set REDIS_MODE=sentinel or remove them"
        )
    if mode == "standalone":
        return
    if url.startswith("unix://"):
        raise SettingsError(
            f"REDIS_MODE={mode} needs a redis:// or rediss:// REDIS_URL, not unix://"
        )
    if mode == "cluster":
        # A guessed localhost:6379 is never a cluster node anyone meant; make it explicit.
        if not url_given:
            raise SettingsError("REDIS_MODE=cluster needs REDIS_URL naming one cluster node")
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError on a malformed port
        except ValueError as exc:
            raise SettingsError(f"REDIS_URL is invalid for REDIS_MODE=cluster: {exc}") from None
        if not parts.hostname:
            raise SettingsError("REDIS_MODE=cluster needs REDIS_URL with a host: redis://host:port")
        if parts.path.strip("/") not in {"", "0"}:
            raise SettingsError(
                "REDIS_MODE=cluster has only database 0; drop the /db from REDIS_URL"
            )
        return
    if not settings.redis_sentinels:
        raise SettingsError("REDIS_MODE=sentinel needs REDIS_SENTINELS=host:port,host:port,...")
    if not settings.redis_sentinel_master:
        raise SettingsError("REDIS_MODE=sentinel needs REDIS_SENTINEL_MASTER=<master name>")


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must be an http(s) URL")
    return raw.rstrip("/")


_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def _names(raw: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    for name in names:
        if not _TENANT.match(name):
            raise ValueError(f"{name!r} is not a tenant name ([A-Za-z0-9_.-], 1-64)")
    return names


def _api_keys(raw: str) -> tuple[tuple[str, Secret], ...]:
    pairs = []
    for item in (i.strip() for i in raw.split(",") if i.strip()):
        tenant, sep, key = item.partition(":")
        if not sep or not _TENANT.match(tenant) or len(key) < 16:
            raise ValueError("expected tenant:key pairs, keys of at least 16 characters")
        pairs.append((tenant, Secret(key)))
    return tuple(pairs)


def _secrets(raw: str) -> tuple[Secret, ...]:
    keys = tuple(Secret(k.strip()) for k in raw.split(",") if k.strip())
    if any(len(k.value) < 32 for k in keys):
        raise ValueError("each key must be at least 32 characters")
    return keys


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in raw.split(",") if h.strip())
    for host in hosts:
        if any(c in host for c in "/@ ") or host.startswith(("http:", "https:")):
            raise ValueError(f"{host!r} is not host or host:port")
    return hosts


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"{origin!r} is not * or an http(s) origin")
    return origins


def _prefix(raw: str) -> str:
    if not raw or any(c in raw for c in "{}: \t\n"):
        raise ValueError("must be non-empty without braces, colons or spaces")
    return raw


def _token(raw: str) -> Secret:
    if len(raw) < 16 or any(c.isspace() for c in raw):
        raise ValueError("must be at least 16 characters without spaces")
    return Secret(raw)


def _prices(raw: str) -> tuple[tuple[str, Price], ...]:
    table = []
    for item in (i.strip() for i in raw.split(";") if i.strip()):
        model, sep, numbers = item.partition("=")
        values = [float(v) for v in numbers.split(",")] if sep else []
        if not model.strip() or len(values) != 4 or any(v < 0 for v in values):
            raise ValueError(
                "expected model=input,output,cache_read,cache_creation;... (USD per million)"
            )
        price = Price(
            input=values[0], output=values[1], cache_read=values[2], cache_creation=values[3]
        )
        table.append((model.strip(), price))
    return tuple(table)


def _batch_max(raw: str) -> int:
    value = _positive(raw)
    if value > 100_000:
        raise ValueError("the Message Batches API takes at most 100000 requests per batch")
    return value
