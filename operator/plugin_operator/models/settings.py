"""The DataSourceInstanceSettings a plugin receives for a DataSourceInstance.

The operator's health checks and the gateway's calls must send the very same settings, or
the plugin's instance cache would build two instances for one datasource.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from plugin_operator.models.resources import DataSourceSpec
from plugin_operator.protocol.models import DataSourceInstanceSettings

# The Grafana version plugins are told they run in when nobody says otherwise (the chart
# sets operator.grafanaVersion for the operator, the gateway and every backend).
DEFAULT_GRAFANA_VERSION = "12.3.0"


def stable_datasource_id(namespace: str, name: str) -> int:
    """Grafana's numeric datasource id, which the SDK uses as its instance cache key: stable
    across processes and restarts, and below 2^53 so JavaScript clients keep it."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") & ((1 << 53) - 1)) or 1


def datasource_instance_settings(namespace: str, name: str, spec: DataSourceSpec,
                                 secure: Mapping[str, str],
                                 settings_version: int) -> DataSourceInstanceSettings:
    return DataSourceInstanceSettings(
        id=stable_datasource_id(namespace, name), uid=spec.uid, name=spec.name, url=spec.url,
        user=spec.user, database=spec.database, basic_auth_enabled=spec.basic_auth,
        basic_auth_user=spec.basic_auth_user,
        json_data=json.dumps(dict(spec.json_data), separators=(",", ":")).encode(),
        decrypted_secure_json_data=dict(secure), last_updated_ms=settings_version)


def settings_digest(spec: Mapping[str, object], secure: Mapping[str, str]) -> str:
    """Changes whenever the spec or a referenced secret value changes."""
    material = json.dumps({"spec": spec, "secure": dict(sorted(secure.items()))},
                          sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()
