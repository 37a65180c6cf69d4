"""A DataSourceInstance whose check cannot run keeps the time it first could not, so a
recheck that finds the same reason writes no status."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin_operator.controller.datasources import _unknown
from plugin_operator.models.status import DataSourceStatus, Health

EARLY = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LATER = datetime(2026, 12, 1, 10, 5, tzinfo=UTC)


def test_the_same_reason_again_changes_nothing() -> None:
    first = _unknown(None, "Plugin 'p' has no ready backend (phase Starting)", EARLY)
    again = _unknown(first, "Plugin 'p' has no ready backend (phase Starting)", LATER)
    assert again == first
    written = DataSourceStatus(health=first).patch(None)
    assert written is not None
    assert DataSourceStatus(health=again).patch(DataSourceStatus(health=first).to_json()) \
        is None


def test_a_new_reason_or_a_check_that_ran_gets_a_new_time() -> None:
    first = _unknown(None, "no ready backend (phase Starting)", EARLY)
    assert _unknown(first, "no ready backend (phase Failed)", LATER).checked_at != \
        first.checked_at
    checked = Health("ERROR", "no ready backend (phase Starting)", "t")
    assert _unknown(checked, checked.message, LATER).status == "UNKNOWN"
