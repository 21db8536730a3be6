"""The error hierarchy shared by every package, the exit codes it maps to, and the one mapping of exceptions to codes.

Every package raises these (never a bare ``assert`` on user input); ``gate.cli`` turns any exception into one message
on stderr and an exit code through ``exit_status`` below, the only place that decides it. A message always names the
file or argument, the rule, and the value received.
"""

from __future__ import annotations

import errno
import io
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path

PROG = "hallo3-gate"


class ExitCode(IntEnum):
    RELEASED = 0  # the gate passed and the output was released (or a command succeeded)
    GATE_FAILED = 1  # the gate measured everything and a required check failed: quarantined
    USAGE = 2  # bad argument, option, configuration or policy
    NOT_MEASURED = 3  # something the gate needs could not be measured (missing weights, metric crashed)
    INPUT = 4  # an input file is unreadable or breaks a rule (corrupt, truncated, too small, no audio ...)
    PROVENANCE = 5  # signing or verification could not be done (bad credentials, manifest unreadable ...)
    AWAITING_REVIEW = 6  # every automated check passed; the policy asks for human approval: pending, NOT released
    INTERNAL = 70  # an unexpected error (a bug): the traceback goes to a log file (sysexits EX_SOFTWARE)
    IO = 74  # an output could not be written: disk full, permission denied, read-only, not a regular file (EX_IOERR)
    INTERRUPTED = 130  # interrupted by the user (Ctrl-C: 128 + SIGINT)


class Hallo3Error(Exception):
    """Base class. ``subject`` is the file or argument, ``rule`` what was expected, ``value`` what was received."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, subject: str, rule: str, value: object = None) -> None:
        self.subject = str(subject)
        self.rule = rule
        self.value = value
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.subject}: {self.rule}"
        if self.value is not None:
            text += f" (got {self.value})"
        return " ".join(text.split())


class UsageError(Hallo3Error):
    exit_code = ExitCode.USAGE


class InputError(Hallo3Error):
    exit_code = ExitCode.INPUT


class MeasurementError(Hallo3Error):
    exit_code = ExitCode.NOT_MEASURED


class ProvenanceError(Hallo3Error):
    exit_code = ExitCode.PROVENANCE


class OutputError(Hallo3Error):
    """An output could not be written (disk full, permission denied, read-only, not a regular file)."""

    exit_code = ExitCode.IO


# --- text that is safe on a terminal ---------------------------------------------------------------------------------

# C0 controls but tab and newline, DEL, C1 controls, and the bidirectional controls that can make a file name read
# differently from what it is (U+061C, U+200E/F, U+202A-E, U+2066-9).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_UNPRINTABLE_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object, *, newlines: bool = True) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\u202e``) instead of acting on the
    terminal: what a user-supplied string may hold is displayed, never executed (colours, cursor moves, reordering).
    ``newlines=False`` escapes line breaks and tabs too, so one value stays on its line (it cannot fake another)."""
    pattern = _UNPRINTABLE if newlines else _UNPRINTABLE_OR_BREAK
    return pattern.sub(lambda m: ascii(m.group())[1:-1], str(text))


def one_line(text: object, limit: int = 500) -> str:
    """A printable single line: whitespace runs (newlines included) become one space; cut at ``limit`` characters."""
    line = " ".join(printable(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def loader_reason(exc: BaseException) -> str:
    """One safe line for what a file loader (``torch.load(weights_only=True)``, ``np.load(allow_pickle=False)``)
    raised. Their own messages advise turning the safety off (``weights_only=False``, ``allow_pickle=True``,
    ``pickle.load()``); that advice must never reach a user of a gate, so it is replaced by what was refused."""
    text = _ANSI.sub("", str(exc))
    if "weights only load failed" in text.lower() or type(exc).__name__ == "UnpicklingError":
        found = _UNSUPPORTED_GLOBAL.search(text)
        held = f"the Python object {found.group(1)}" if found else "data other than plain tensors"
        return f"refused by the safe loader: the file holds {held}"
    if isinstance(exc, ValueError) and "pickled" in text:
        return "refused: not an array archive (reading it would mean unpickling arbitrary objects)"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return one_line(f"{type(exc).__name__}: {first}" if first else type(exc).__name__, limit=200)


# --- exceptions -> exit codes ----------------------------------------------------------------------------------------

# click raises its own exception classes; typer >= 0.29 vendors click as ``typer._click`` with its own copies (and
# ``typer.exceptions`` for Exit/Abort), older typer uses ``click`` itself. They are matched by class name in any of
# these modules, so every flavour maps the same way whichever is installed.
_CLICK_MODULES = frozenset({"click.exceptions", "typer._click.exceptions", "typer.exceptions"})


def _click_kind(exc: BaseException) -> str | None:
    """``"Exit"``, ``"Abort"`` or ``"ClickException"`` when ``exc`` is one of click's (or typer's copy of them)."""
    for cls in type(exc).__mro__:
        if cls.__module__ in _CLICK_MODULES and cls.__name__ in ("Exit", "Abort", "ClickException"):
            return cls.__name__
    return None


def _click_message(exc: BaseException) -> str:
    """click's own rendering of a usage error: the usage line, the --help hint and ``Error: ...`` (or the help text
    for a command given no arguments)."""
    buffer = io.StringIO()
    try:
        exc.show(file=buffer)  # type: ignore[attr-defined]
    except Exception:  # a click/typer mismatch can break the usage line: the error itself is still worth showing
        return f"{PROG}: error: {one_line(exc)}"
    return printable(buffer.getvalue().rstrip("\n"))


def _os_error_message(exc: OSError) -> str:
    paths = " -> ".join(printable(p) for p in (exc.filename, exc.filename2) if p is not None)
    reason = exc.strerror or one_line(exc) or type(exc).__name__
    return f"{PROG}: error: {paths}: {reason}" if paths else f"{PROG}: error: I/O error: {reason}"


def log_dir(environ: dict[str, str] | None = None) -> Path:
    """Where tracebacks of unexpected errors go: ``$XDG_STATE_HOME/hallo3-gate/logs`` (``~/.local/state`` default)."""
    env = os.environ if environ is None else environ
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / PROG / "logs"


def write_traceback_log(exc: BaseException, directory: Path | None = None) -> Path | None:
    """Write ``exc``'s traceback to a new file under ``directory`` (default ``log_dir()``); None if that fails."""
    directory = log_dir() if directory is None else directory
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    path = directory / f"error-{stamp}-{os.getpid()}.log"
    text = "".join(traceback.format_exception(exc))
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(text)
    except OSError:
        return None
    return path


@dataclass(frozen=True)
class ExitStatus:
    """What the command line does with an exception: exit with ``code`` after printing ``message`` on stderr
    (empty: print nothing). ``internal`` marks an unexpected error, whose traceback ``--debug`` shows."""

    code: int
    message: str
    internal: bool = False


def exit_status(
    exc: BaseException, *, debug: bool = False, log: Callable[[BaseException], Path | None] = write_traceback_log
) -> ExitStatus:
    """The one mapping from an exception to an exit code and its message (no traceback in the message, ever).

    click/typer usage errors (any flavour) -> 2 with click's usage message; ``Hallo3Error`` -> its own code;
    ``OSError`` -> 74 naming the path and the OS error; Ctrl-C -> 130; anything else -> 70 with one line naming the
    log file that holds the traceback (``log``), or, with ``debug``, pointing at the traceback printed above.
    """
    kind = _click_kind(exc)
    if kind == "Exit":  # --help, or an explicit typer.Exit(code)
        return ExitStatus(int(getattr(exc, "exit_code", 0) or 0), "")
    if kind == "Abort" or isinstance(exc, KeyboardInterrupt):
        return ExitStatus(ExitCode.INTERRUPTED, f"{PROG}: interrupted")
    if kind == "ClickException":
        return ExitStatus(ExitCode.USAGE, _click_message(exc))
    if isinstance(exc, SystemExit):
        if not exc.code:  # a library's sys.exit(0)
            return ExitStatus(ExitCode.RELEASED, "")
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and cause.errno == errno.EPIPE:  # click/rich exit 1 when stdout's reader left
            return ExitStatus(ExitCode.IO, f"{PROG}: error: standard output: {cause.strerror or 'broken pipe'}")
    if isinstance(exc, Hallo3Error):
        return ExitStatus(exc.exit_code, f"{PROG}: error: {one_line(exc.one_line())}")
    if isinstance(exc, OSError):
        return ExitStatus(ExitCode.IO, _os_error_message(exc))
    detail = one_line(exc, 300)
    what = f"{PROG}: internal error: {type(exc).__name__}" + (f": {detail}" if detail else "")
    if debug:
        return ExitStatus(ExitCode.INTERNAL, f"{what} — traceback above", internal=True)
    path = log(exc)
    where = f"traceback in {printable(path)}" if path is not None else "run with --debug for the traceback"
    return ExitStatus(ExitCode.INTERNAL, f"{what} — {where}", internal=True)
