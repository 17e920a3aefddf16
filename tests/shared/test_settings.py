"""Settings: read once from the environment, loud on bad values, documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.settings import Secret, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_issue() -> None:
    """The documented defaults."""
    s = Settings.from_env({})
    assert (s.redis_url, s.gateway_port, s.notifier_port, s.worker_concurrency) == (
        "redis://localhost:6379/0",
        8000,
        8001,
        2,
    )
    assert s.analyzer_backend == "local"  # no API key: the offline backend, never simulated
    assert Settings.from_env({"ANTHROPIC_API_KEY": "sk-test"}).analyzer_backend == "claude"
    assert s.max_attempts == 5


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("GATEWAY_PORT", "eighty", "GATEWAY_PORT"),
        ("GATEWAY_PORT", "70000", "TCP port"),
        ("SCAN_WORKER_CONCURRENCY", "0", "positive"),
        ("ANALYZER_BACKEND", "gpt", "one of claude"),
        ("REDIS_URL", "http://x", "redis://"),
        ("LABELSCAN_PREFIX", "a:b", "colons"),
        ("LABELSCAN_API_KEYS", "tenant-without-key", "tenant:key"),
        ("LABELSCAN_EVENT_KEYS", "short", "32 characters"),
        ("CORS_ORIGINS", "example.com", "origin"),
        ("SCAN_INDEX_MAX", "0", "SCAN_INDEX_MAX"),
        ("SCAN_WAIT_MAX", "-1", "SCAN_WAIT_MAX"),
        ("SCAN_WAIT_LIMIT", "61", "SCAN_WAIT_LIMIT"),
    ],
)
def test_malformed_values_fail_with_one_clear_line(name: str, value: str, words: str) -> None:
    """A bad value names the variable and what is wrong."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) and words in str(info.value)


def test_secrets_never_print() -> None:
    """API keys print as stars, in str, repr and the settings' repr."""
    s = Settings.from_env(
        {"ANTHROPIC_API_KEY": "sk-very-secret", "LABELSCAN_API_KEYS": "a:0123456789abcdef-secret"}
    )
    assert "secret" not in repr(s) and "secret" not in str(s.anthropic_api_key)
    assert isinstance(s.anthropic_api_key, Secret) and s.anthropic_api_key.value == "sk-very-secret"


def test_every_setting_is_documented_in_the_readme() -> None:
    """Each environment variable the code reads appears in the README's table."""
    source = (ROOT / "shared" / "settings.py").read_text()
    names = set(re.findall(r'r\.get\(\s*"([A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text()
    assert len(names) > 40
    missing = sorted(n for n in names if f"`{n}`" not in readme)
    assert not missing, f"not in README: {missing}"


def test_redis_password_never_reaches_the_logs() -> None:
    """What the services log at start masks the password, keeps the rest."""
    masked = Settings.from_env({"REDIS_URL": "redis://app:s3cret@cache:6379/0"})
    assert masked.redis_url_for_logs == "redis://app:***@cache:6379/0"
    only_password = Settings.from_env({"REDIS_URL": "rediss://:s3cret@cache:6380/1"})
    assert only_password.redis_url_for_logs == "rediss://:***@cache:6380/1"
    assert Settings.from_env({}).redis_url_for_logs == "redis://localhost:6379/0"


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"REDIS_MODE": "replicated"}, "REDIS_MODE='replicated' is invalid: must be one of"),
        ({"REDIS_MODE": "cluster"}, "REDIS_MODE=cluster needs REDIS_URL naming one cluster node"),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "unix:///run/valkey.sock"},
            "REDIS_MODE=cluster needs a redis:// or rediss:// REDIS_URL, not unix://",
        ),
        (
            {"REDIS_MODE": "cluster", "REDIS_URL": "redis://node:6379/3"},
            "only database 0",
        ),
        ({"REDIS_MODE": "cluster", "REDIS_URL": "redis://node:port"}, "REDIS_URL is invalid"),
        (
            {"REDIS_MODE": "sentinel", "REDIS_SENTINEL_MASTER": "main"},
            "REDIS_MODE=sentinel needs REDIS_SENTINELS",
        ),
        (
            {"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "s1:26379"},
            "REDIS_MODE=sentinel needs REDIS_SENTINEL_MASTER",
        ),
        (
            {
                "REDIS_MODE": "sentinel",
                "REDIS_SENTINELS": "s1:26379",
                "REDIS_SENTINEL_MASTER": "main",
                "REDIS_URL": "unix:///run/valkey.sock",
            },
            "not unix://",
        ),
        ({"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "s1"}, "'s1' is not host:port"),
        ({"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "s1:99999"}, "TCP port"),
        ({"REDIS_MODE": "sentinel", "REDIS_SENTINELS": "a@b:1"}, "is not host:port"),
        ({"REDIS_SENTINEL_MASTER": "my master"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINELS": "s1:26379"}, "set REDIS_MODE=sentinel"),
    ],
)
def test_malformed_redis_modes_fail_with_one_clear_line(env: dict[str, str], words: str) -> None:
    """Each impossible combination of REDIS_MODE and its companions names what to fix."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert words in message and "\n" not in message


def test_redis_modes_parse() -> None:
    """The three modes with what each needs; sentinels accept IPv6 in brackets."""
    assert Settings.from_env({}).redis_mode == "standalone"
    unix = Settings.from_env({"REDIS_URL": "unix:///run/valkey.sock?db=1"})
    assert (unix.redis_mode, unix.redis_url) == ("standalone", "unix:///run/valkey.sock?db=1")
    cluster = Settings.from_env({"REDIS_MODE": "cluster", "REDIS_URL": "rediss://u:p@node-1:7000"})
    assert (cluster.redis_mode, cluster.redis_url) == ("cluster", "rediss://u:p@node-1:7000")
    sentinel = Settings.from_env(
        {
            "REDIS_MODE": "sentinel",
            "REDIS_SENTINELS": "s1:26379, [::1]:26380 ,10.0.0.3:26381",
            "REDIS_SENTINEL_MASTER": "labelscan",
        }
    )
    assert sentinel.redis_sentinels == (("s1", 26379), ("::1", 26380), ("10.0.0.3", 26381))
    assert sentinel.redis_sentinel_master == "labelscan"


def test_hardening_limits_parse_and_refuse_what_would_break_browsers() -> None:
    settings = Settings.from_env(
        {
            "HTTP_MAX_HEADER_BYTES": "32768",
            "HTTP_MAX_HEADERS": "50",
            "HTTP_HEADER_TIMEOUT": "2.5",
            "SSE_MAX_STREAMS_PER_TENANT": "7",
            "SSE_MAX_REPLAY": "500",
        }
    )
    assert (settings.http_max_header_bytes, settings.http_max_headers) == (32768, 50)
    assert settings.http_header_timeout_s == 2.5
    assert (settings.sse_max_streams_per_tenant, settings.sse_max_replay) == (7, 500)
    for name, value in [
        ("HTTP_MAX_HEADER_BYTES", "512"),
        ("HTTP_MAX_HEADERS", "3"),
        ("HTTP_HEADER_TIMEOUT", "0"),
        ("SSE_MAX_STREAMS_PER_TENANT", "0"),
        ("SSE_MAX_REPLAY", "-1"),
    ]:
        with pytest.raises(SettingsError, match=name):
            Settings.from_env({name: value})


@pytest.mark.parametrize(
    ("env", "tracing", "exporters"),
    [
        ({}, False, ()),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False, ()),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True, ("otlp",)),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True, ("otlp",)),
        ({"OTEL_TRACES_EXPORTER": "console"}, True, ("console",)),
        ({"OTEL_TRACES_EXPORTER": "otlp, console"}, True, ("otlp", "console")),
        (
            {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            False,
            (),
        ),
        (
            {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"},
            False,
            (),
        ),
    ],
)
def test_tracing_is_on_only_when_an_exporter_or_endpoint_is_set(
    env: dict[str, str], tracing: bool, exporters: tuple[str, ...]
) -> None:
    """The standard OTEL_* variables decide; unset, tracing is off (not the spec's otlp)."""
    s = Settings.from_env(env)
    assert (s.tracing, s.trace_exporters) == (tracing, exporters)


def test_unknown_trace_exporter_is_refused() -> None:
    """An exporter this build does not ship fails at start, naming the variable."""
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER='zipkin' is invalid"):
        Settings.from_env({"OTEL_TRACES_EXPORTER": "zipkin"})
