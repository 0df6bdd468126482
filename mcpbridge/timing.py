"""
Timing rules shared by the session manager and the pools: restart backoff,
waiting until idle, and the once-a-second tick.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall


def restartDelay(failures: int) -> float:
    """
    Seconds to wait before starting a child again after C{failures} failed
    starts in a row: 1, 2, 4 ... at most 30, so a broken command cannot
    make the bridge spin.
    """
    return min(30.0, 0.5 * 2 ** min(failures, 6))


def whenIdle(clock: Any, busy: Callable[[], int], deadline: float) -> "Deferred[int]":
    """
    Poll C{busy} until it is 0 or the clock reaches C{deadline}.

    @return: fires with what C{busy} said last (0 unless time ran out).
    """
    d: Deferred[int] = Deferred()

    def check() -> None:
        left = busy()
        if left and clock.seconds() < deadline:
            clock.callLater(0.05, check)
        else:
            d.callback(left)

    check()
    return d


class Ticker:
    """
    Calls C{tick} once a second on C{clock} between L{start} and L{stop}:
    the periodic work (heartbeats, reaping) of a session manager or a pool.
    """

    def __init__(self, clock: Any, tick: Callable[[], None]) -> None:
        self._call = LoopingCall(tick)
        self._call.clock = clock

    def start(self) -> None:
        self._call.start(1.0, now=False)

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()
