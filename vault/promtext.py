"""Prometheus text exposition: how the status commands write label values and numbers.

Numbers are written whole: a Unix time such as 1796327868 must not become
``1.79633e+09`` (six significant digits, half an hour off), nor a byte
count lose its last digits.
"""

from __future__ import annotations


def label(value: str) -> str:
    """A label value, escaped as the exposition format requires."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    """An integer as its digits, anything else as Python's shortest exact form."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)
