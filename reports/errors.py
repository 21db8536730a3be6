"""The error hierarchy shared by every package, and the exit codes it maps to.

Every package raises these (never a bare ``assert`` on user input); ``gate.cli`` turns them into one line on stderr
and the exit code below. A message always names the file or argument, the rule, and the value received.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    RELEASED = 0  # the gate passed and the output was released (or a command succeeded)
    GATE_FAILED = 1  # the gate measured everything and a required check failed: quarantined
    USAGE = 2  # bad argument, option, configuration or policy
    NOT_MEASURED = 3  # something the gate needs could not be measured (missing weights, metric crashed)
    INPUT = 4  # an input file is unreadable or breaks a rule (corrupt, truncated, too small, no audio ...)
    PROVENANCE = 5  # signing or verification could not be done (bad credentials, manifest unreadable ...)


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
