"""The plugin's files as Grafana sees them, and their SHA-256 digests.

Grafana's rules: every regular file under the plugin directory counts, by its path relative
to the directory with ``/`` separators; a symlink to a file inside the directory counts under
the link's own path; a symlink to a directory is neither counted nor followed; a symlink that
resolves outside the directory is an error. We also refuse devices, FIFOs and sockets, which
cannot be hashed safely.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

_CHUNK = 1 << 20


class PluginFilesError(ValueError):
    """The plugin directory cannot be listed the way a signature check needs."""


def plugin_files(plugin_dir: Path) -> dict[str, Path]:
    """Relative POSIX path -> absolute path of every file Grafana would list."""
    root = Path(os.path.realpath(plugin_dir))
    if not root.is_dir():
        raise PluginFilesError(f"{plugin_dir} is not a directory")
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=_raise):
        base = Path(dirpath)
        # os.walk lists symlinks to directories among dirnames but does not enter them.
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = Path(os.path.realpath(path))
                if target != root and root not in target.parents:
                    raise PluginFilesError(
                        f"symlink {rel} points outside the plugin directory (to {target}); "
                        "a plugin may only link to its own files")
                if not target.exists():
                    raise PluginFilesError(f"symlink {rel} points to {target}, which does "
                                           "not exist")
                if target.is_dir():
                    continue
                found[rel] = path
            elif stat.S_ISREG(mode):
                found[rel] = path
            elif not stat.S_ISDIR(mode):
                raise PluginFilesError(f"{rel} is not a regular file (device, FIFO or "
                                       "socket); a plugin holds only files and directories")
    return found


def _raise(error: OSError) -> None:
    raise PluginFilesError(f"cannot list {error.filename}: {error.strerror}")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
