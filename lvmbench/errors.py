"""User-facing errors: one line, a non-zero exit, no traceback unless ``--debug``."""
from __future__ import annotations

import difflib


class UserError(Exception):
    """A mistake the user can fix (bad name, path, value). The CLI prints it as one line."""

    exit_code = 2


def suggest(name: str, choices) -> str:
    """Return ' (did you mean X?)' for the closest of ``choices``, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=2, cutoff=0.5)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, choices) -> UserError:
    """The error for an unknown dataset, backbone, method or key, with the closest names."""
    choices = sorted(choices)
    return UserError(f"unknown {kind} '{name}'{suggest(name, choices)}; choose from: {', '.join(choices)}")


LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # what str.splitlines breaks on


def one_line(text: str) -> str:
    """``text`` on one line: line breaks a value carried into a message are shown escaped (``\\n``)."""
    return "".join(ch.encode("unicode_escape").decode() if ch in LINE_BREAKS else ch for ch in str(text))
