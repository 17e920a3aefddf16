"""The controls hash as a replica reads it: pauses by target, limits over the settings."""

from __future__ import annotations

from shared.controls import Controls, PauseTarget
from shared.settings import Settings
from tests.conftest import SettingsFactory


def test_pauses_match_by_tenant_priority_or_all(settings: Settings) -> None:
    """The most specific pause that holds a scan is named; others' scans are free."""
    by_tenant = PauseTarget(tenant="a").field.encode()
    by_both = PauseTarget(tenant="b", priority="low").field.encode()
    controls = Controls({by_tenant: b'{"by":"ops","at_ms":1}', by_both: b"{}"}, settings)
    assert controls.paused("a", "high") == PauseTarget(tenant="a")
    assert controls.paused("b", "low") == PauseTarget(tenant="b", priority="low")
    assert controls.paused("b", "high") is None
    everything = Controls({PauseTarget().field.encode(): b"{}"}, settings)
    assert everything.paused("c", "normal") == PauseTarget()
    assert PauseTarget().describe() == "all scans"


def test_limits_override_settings_and_bad_values_are_ignored(
    make_settings: SettingsFactory,
) -> None:
    """Set fields win over the settings; one that does not parse leaves the setting."""
    settings = make_settings(anthropic_rpm=50, tenant_rps=20.0)
    raw = {b"limit:anthropic_rpm": b"7", b"limit:tenant_rps": b"x", b"limit:unknown": b"1"}
    controls = Controls(raw, settings)
    assert controls.limits.anthropic_rpm == 7
    assert controls.limits.tenant_rps == 20.0
    assert controls.overridden == ["anthropic_rpm"]
