"""plugin-front (tools/plugin-front), built for tests by hack/build-front.sh (cached)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from plugin_operator.host.front import FRONT_ENV
from tests.support.kube import HACK


def build_front() -> Path:
    """The static plugin-front binary, rebuilt only when its sources changed."""
    built = subprocess.run([str(HACK / "build-front.sh")], capture_output=True, text=True,
                           timeout=1800, check=False)
    assert built.returncode == 0, f"hack/build-front.sh failed:\n{built.stderr}"
    return Path(built.stdout.strip().splitlines()[-1])


@contextmanager
def front_in_environment() -> Iterator[Path]:
    """$PLUGIN_OPERATOR_FRONT set for this process and every host it starts, then restored."""
    path = build_front()
    previous = os.environ.get(FRONT_ENV)
    os.environ[FRONT_ENV] = str(path)
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop(FRONT_ENV, None)
        else:
            os.environ[FRONT_ENV] = previous
