"""When the host restarts a plugin that exited, and when it gives up and leaves it to the
kubelet.

Grafana restarts a dead plugin process about a second after it exits, for ever. Restarting
inside the pod is faster than that and than a container restart (no new host, no probe
round trip), but an endless crash loop must still slow down: a few quick restarts are free,
then each waits twice as long, and after ``give_up_after`` exits within ``window`` seconds
the host exits itself, so the kubelet's CrashLoopBackOff (which grows to five minutes)
takes over. A plugin that ran ``healthy_after`` seconds starts with a clean slate.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RestartPolicy:
    immediate: int = 2  # restarts with no wait, from a clean slate
    first_delay: float = 0.1
    max_delay: float = 2.0
    give_up_after: int = 6  # exits within the window
    window: float = 60.0
    healthy_after: float = 10.0


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay: float = 0.0


@dataclass
class Supervisor:
    """Decides after each exit; ``clock`` is monotonic seconds."""

    clock: Callable[[], float]
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    _exits: deque[float] = field(default_factory=deque)
    _started: float | None = None

    def started(self) -> None:
        self._started = self.clock()

    def exited(self) -> Decision:
        now = self.clock()
        policy = self.policy
        if self._started is not None and now - self._started >= policy.healthy_after:
            self._exits.clear()
        self._exits.append(now)
        while self._exits and now - self._exits[0] > policy.window:
            self._exits.popleft()
        recent = len(self._exits)
        if recent >= policy.give_up_after:
            return Decision(restart=False)
        if recent <= policy.immediate:
            return Decision(restart=True)
        delay = policy.first_delay * 2 ** (recent - policy.immediate - 1)
        return Decision(restart=True, delay=min(delay, policy.max_delay))
