"""Parsing of the lab's human units: rates ("20mbit"), durations ("10ms"), percentages ("1%").

Every parser raises ValueError with a short message saying what form is expected; the
scenario loader turns it into a one-line error naming the key.
"""

from __future__ import annotations

import re

_NUMBER = r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)"

_RATE_UNITS = {
    "bit": 1.0,
    "bps": 1.0,
    "kbit": 1e3,
    "kbps": 1e3,
    "mbit": 1e6,
    "mbps": 1e6,
    "gbit": 1e9,
    "gbps": 1e9,
}
_RATE_RE = re.compile(rf"^\s*{_NUMBER}\s*([a-z]+)\s*$")

_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
_DURATION_RE = re.compile(rf"^\s*{_NUMBER}\s*(us|ms|s)?\s*$")

_PERCENT_RE = re.compile(rf"^\s*{_NUMBER}\s*%\s*$")


def parse_rate(value: str | int | float) -> float:
    """Return a rate in bits per second from "20mbit", "1.5gbit", "500kbit" (or a number)."""
    if isinstance(value, bool):
        raise ValueError('expected a rate such as "20mbit"')
    if isinstance(value, int | float):
        rate = float(value)
    else:
        match = _RATE_RE.match(value.lower())
        if match is None or match.group(2) not in _RATE_UNITS:
            raise ValueError(f'expected a rate such as "20mbit" or "500kbit", got {value!r}')
        rate = float(match.group(1)) * _RATE_UNITS[match.group(2)]
    if rate <= 0:
        raise ValueError(f"a rate must be positive, got {value!r}")
    return rate


def parse_duration(value: str | int | float) -> float:
    """Return seconds from "10ms", "1.5s", "250us" (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "10ms"')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION_RE.match(value.lower())
        if match is None:
            raise ValueError(f'expected a duration such as "10ms" or "1s", got {value!r}')
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def parse_percent(value: str | int | float) -> float:
    """Return a fraction in [0, 1] from "1%", "0.5%" (a bare number is a fraction)."""
    if isinstance(value, bool):
        raise ValueError('expected a percentage such as "1%"')
    if isinstance(value, int | float):
        fraction = float(value)
    else:
        match = _PERCENT_RE.match(value)
        if match is None:
            raise ValueError(f'expected a percentage such as "1%", got {value!r}')
        fraction = float(match.group(1)) / 100.0
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a percentage must be between 0% and 100%, got {value!r}")
    return fraction


def format_rate(rate_bps: float) -> str:
    """Format a rate for tc and for people: 20000000 -> "20mbit"."""
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if rate_bps >= scale:
            text = f"{rate_bps / scale:.6f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{max(1, round(rate_bps))}bit"


def format_duration(seconds: float) -> str:
    """Format a duration for people: 0.01 -> "10ms"."""
    if seconds >= 1.0:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
