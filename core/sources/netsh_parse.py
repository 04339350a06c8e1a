"""Parse the text `netsh` prints about the dynamic port range and excluded port ranges.

Pure text handling, no Windows imports, so it is tested anywhere against recorded output.
netsh translates its labels into the system language, so the parsers never match
labels: they rely on the parts that every language keeps — `label : number` lines for
the dynamic range, a dashed rule followed by `start end [*]` rows for the exclusions.
"""

from __future__ import annotations

import re

MIN_PORT = 1
MAX_PORT = 65535

# "Start Port      : 49152", "Startport : 49152", "開始ポート : 49152" (full-width colon too).
_LABELLED_NUMBER = re.compile(r"^(?P<label>.*?\S)\s*[:\uff1a]\s*(?P<value>\d+)\s*$")
# "     50000       50059     *"  (the star marks an administered exclusion)
_RANGE_ROW = re.compile(r"^(?P<lo>\d+)\s+(?P<hi>\d+)(?:\s+\*+)?$")


def _lines(text: str) -> list[str]:
    """Stripped lines; splitlines() copes with CRLF, and a UTF-8 BOM is dropped."""
    return [line.strip().lstrip("\ufeff").strip() for line in text.splitlines()]


def _excerpt(text: str, limit: int = 80) -> str:
    for line in _lines(text):
        if line:
            return repr(line if len(line) <= limit else line[: limit - 3] + "...")
    return "(empty output)"


def parse_dynamic_port(text: str) -> tuple[int, int]:
    """`netsh int ipv4 show dynamicport tcp` -> (first port, last port), inclusive.

    The output holds two `label : number` lines, start port then number of ports.
    Raises ValueError, in one line, when the text is not that.
    """
    values = [int(m.group("value")) for line in _lines(text) if (m := _LABELLED_NUMBER.match(line))]
    if len(values) != 2:
        raise ValueError(
            f"netsh dynamic port output not understood: expected a start port and a number of "
            f"ports, found {len(values)} numbered line(s); output begins {_excerpt(text)}"
        )
    start, count = values
    end = start + count - 1
    if not MIN_PORT <= start <= MAX_PORT or count < 1 or end > MAX_PORT:
        raise ValueError(
            f"netsh dynamic port output gives an impossible range: start {start}, "
            f"{count} port(s) (ports run 1-65535)"
        )
    return start, end


def parse_excluded_ranges(text: str) -> tuple[tuple[int, int], ...]:
    """`netsh int ipv4 show excludedportrange protocol=tcp` -> ((first, last), ...).

    Lines before the dashed rule are the (localized) title and column headers. After
    it, every non-blank line must be a `first last` row, optionally starred, or the
    footer explaining the star (which begins with `*`). An empty table is valid and
    returns (). Raises ValueError, in one line, on anything else.
    """
    ranges: list[tuple[int, int]] = []
    in_table = False
    for line in _lines(text):
        if not line:
            continue
        if not in_table:
            in_table = "-" in line and set(line) <= {"-", " ", "\t"}
            continue
        if set(line) <= {"-", " ", "\t"} or line.startswith("*"):
            continue  # a second rule, or the "* - Administered port exclusions." footer
        row = _RANGE_ROW.match(line)
        if row is None:
            raise ValueError(f"netsh excluded port ranges: unexpected line {line!r}")
        lo, hi = int(row.group("lo")), int(row.group("hi"))
        if not MIN_PORT <= lo <= hi <= MAX_PORT:
            raise ValueError(f"netsh excluded port ranges: impossible range {lo}-{hi}")
        ranges.append((lo, hi))
    if not in_table:
        raise ValueError(
            f"netsh excluded port ranges output not understood: no table found; "
            f"output begins {_excerpt(text)}"
        )
    return tuple(ranges)
