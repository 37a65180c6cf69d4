"""Where plugin backends send their own spans: the variables Grafana gives its plugins.

Grafana, when tracing is on and the plugin may trace, starts it with
``GF_INSTANCE_OTLP_ADDRESS`` (its OTLP/gRPC collector, ``host:port``),
``GF_INSTANCE_OTLP_PROPAGATION``, ``GF_INSTANCE_OTLP_SAMPLER_TYPE``,
``GF_INSTANCE_OTLP_SAMPLER_PARAM`` (``%.6f``) and ``GF_INSTANCE_OTLP_SAMPLER_REMOTE_URL``
(pluginsintegration/pluginconfig/envvars.go). The Go SDK reads them when it starts
(backend/setup.go): with an address it exports spans in plaintext gRPC there, sampling with a
parent-based sampler of that type. The operator's ``tracing`` settings (config.py) are those
values; pure functions here check them and make the variables.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

# What the Go SDK accepts (internal/tracerprovider): any other value stops the plugin at start.
SAMPLER_TYPES = ("", "const", "probabilistic", "rateLimiting", "remote")
PROPAGATORS = ("w3c", "jaeger")
_ADDRESS = re.compile(r"^[A-Za-z0-9._-]+:[0-9]{1,5}$|^\[[0-9A-Fa-f:.]+\]:[0-9]{1,5}$")

# The settings' kinds (config.py's _SETTINGS), converted by convert() below.
KINDS = ("otlpAddress", "propagation", "samplerType", "samplerParam", "samplerUrl")


@dataclass(frozen=True)
class TracingSettings:
    otlp_address: str = ""  # host:port; empty: plugins are not told to trace
    propagation: str = ""  # the SDK's default: W3C trace context and baggage
    # For traces a plugin starts itself; calls from the gateway carry its decision. Never, by
    # default: otherwise each kubelet probe of a backend (every second) would be a trace.
    sampler_type: str = "const"
    sampler_param: float = 0.0
    sampler_remote_url: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.otlp_address)


def convert(kind: str, value: Any) -> Any:
    """One setting from the file or the environment; ValueError says what is wrong."""
    if kind == "samplerParam":
        if isinstance(value, bool):
            raise ValueError(f"must be a number, not {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, not {value!r}") from None
        if not number >= 0:
            raise ValueError(f"must not be negative, not {value!r}")
        return number
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {value!r}")
    value = value.strip()
    if kind == "otlpAddress" and value and not _ADDRESS.match(value):
        raise ValueError(f"must be host:port of an OTLP/gRPC collector, without a scheme (as "
                         f"Grafana's [tracing.opentelemetry.otlp] address), not {value!r}")
    if kind == "propagation" and any(p and p not in PROPAGATORS for p in value.split(",")):
        raise ValueError(f"must be empty or a comma-separated list of {', '.join(PROPAGATORS)}"
                         f", not {value!r}")
    if kind == "samplerType" and value not in SAMPLER_TYPES:
        raise ValueError(f"must be one of {', '.join(repr(t) for t in SAMPLER_TYPES)}, "
                         f"not {value!r}")
    if kind == "samplerUrl" and value and not value.startswith(("http://", "https://")):
        raise ValueError(f"must be empty or an http:// or https:// URL, not {value!r}")
    return value


def check(settings: TracingSettings) -> None:
    """What only the settings together can say wrong; the SDK would refuse to start."""
    kind, param = settings.sampler_type, settings.sampler_param
    if kind in ("", "const") and param not in (0, 1):
        raise ValueError(f"tracing.samplerParam must be 0 or 1 for the {kind or 'default'} "
                         f"sampler (never or always), not {param:g}")
    if kind == "probabilistic" and param > 1:
        raise ValueError(f"tracing.samplerParam is a probability for the probabilistic "
                         f"sampler: at most 1, not {param:g}")


def plugin_env(settings: TracingSettings, overridden: Collection[str] = ()
               ) -> list[tuple[str, str]]:
    """The backend container's tracing variables, as Grafana sets them, less those named in
    ``overridden`` (the Plugin's own env); none when off. (GF_PLUGIN_VERSION, which Grafana
    sends with them, the host sets from plugin.json whether or not tracing is on.)"""
    if not settings.enabled:
        return []
    env = [("GF_INSTANCE_OTLP_ADDRESS", settings.otlp_address),
           ("GF_INSTANCE_OTLP_PROPAGATION", settings.propagation),
           ("GF_INSTANCE_OTLP_SAMPLER_TYPE", settings.sampler_type),
           ("GF_INSTANCE_OTLP_SAMPLER_PARAM", f"{settings.sampler_param:.6f}"),
           ("GF_INSTANCE_OTLP_SAMPLER_REMOTE_URL", settings.sampler_remote_url)]
    return [(name, value) for name, value in env if name not in overridden]
