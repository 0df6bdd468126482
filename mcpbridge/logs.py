"""
Structured logging for mcpbridge.

Every logger in the package publishes through one level filter, so
C{--log-level} silences mcpbridge's own debug events cheaply without touching
the observers twistd (or a test) installed.
"""

from __future__ import annotations

from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

_predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
_publisher = FilteringLogObserver(globalLogPublisher, [_predicate])


def setLogLevel(name: str) -> None:
    """
    Set the lowest level of mcpbridge events that reach the log.

    @raise KeyError: for a name not in L{LEVELS}.
    """
    _predicate.setLogLevelForNamespace("", LEVELS[name.lower()])


def debugEnabled() -> bool:
    """
    Whether debug events pass the filter; lets hot paths skip building them.
    """
    return _predicate.logLevelForNamespace("") <= LogLevel.debug


def logger(namespace: str) -> Logger:
    """
    A L{Logger} for C{namespace} that publishes through the level filter.
    """
    return Logger(namespace=namespace, observer=_publisher)
