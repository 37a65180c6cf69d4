"""Angular detection on module.js with Grafana's built-in patterns.

Grafana no longer runs Angular plugins; it scans a plugin's module.js for these markers, in
this order, and refuses the plugin when one is found. The first match is reported.

Checked against Grafana's static list (``defaultDetectors`` in
pkg/plugins/manager/loader/angular/angularinspector/angularinspector.go) as it stands since
grafana/grafana#88845 (commit 1909ad6f, merged June 2024, backported to 11.0.x), which
dropped ``editor.html``. Earlier, #74862 (commit 322fde1f, September 2023) dropped
``getLegacyAngularInjector`` and #70053 (June 2023) replaced a bare ``QueryCtrl`` with the
quoted form and added ``ConfigCtrl``. A recent copy of Grafana's main branch (the
fieldsphere/grafana fork at 6a5fd0aa) has the same list, and Grafana's own cases
(angularinspector_test.go @3a2a1884) agree with it. Grafana can put patterns fetched from
grafana.com first, behind the ``pluginsDynamicAngularDetectionPatterns`` feature toggle;
those are not used here.
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
    """Like :func:`detect_angular` for ``<plugin_dir>/module.js``.

    No module.js, or a folder by that name, is not Angular: Grafana opens module.js from the
    plugin's list of files, which holds no folders.
    """
    try:
        return detect_angular((plugin_dir / MODULE_JS).read_bytes())
    except (FileNotFoundError, IsADirectoryError):
        return None
