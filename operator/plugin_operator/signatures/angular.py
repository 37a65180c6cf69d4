"""Angular detection on module.js with Grafana's built-in patterns.

Grafana no longer runs Angular plugins; it scans a plugin's module.js for these markers and
refuses the plugin when one is found. The first match is reported.
"""

from __future__ import annotations

import re
from pathlib import Path

_CONTAINS = (b"PanelCtrl", b"ConfigCtrl", b"app/plugins/sdk", b"angular.isNumber(",
             b"ctrl.annotation")
_QUERY_CTRL = re.compile(rb"[\"']QueryCtrl[\"']")
MODULE_JS = "module.js"


def detect_angular(module_js: bytes) -> str | None:
    """The Angular marker found in module.js content, or None."""
    for marker in _CONTAINS:
        if marker in module_js:
            return marker.decode()
    match = _QUERY_CTRL.search(module_js)
    return match.group().decode() if match else None


def detect_angular_in(plugin_dir: Path) -> str | None:
    """Like :func:`detect_angular` for ``<plugin_dir>/module.js``; no module.js: None."""
    try:
        return detect_angular((plugin_dir / MODULE_JS).read_bytes())
    except FileNotFoundError:
        return None
