"""One way for library code to tell the user something on stderr without failing: a
``veff: note: ...`` line (a converter's default, an export written without an index) or a
plain ``veff: ...`` line (the batch size ``auto`` chose). The CLI prints errors itself."""

from __future__ import annotations

import sys


def say(line: str) -> None:
    """Write ``line`` (already prefixed with ``veff:``) to stderr now."""
    print(line, file=sys.stderr, flush=True)


def note(message: str) -> None:
    say(f"veff: note: {message}")
