"""What an exec in a guest is made of (the Exec Protocol of drivers/base.py): the request, the
result, and how each output stream is kept to its limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cumulo.errors import Invalid

# What an exec keeps of each output stream beyond its limit: the first EXEC_HEAD bytes and the last
# (limit - EXEC_HEAD) bytes (a recipe's first lines say what it is, its last lines why it failed).
EXEC_HEAD = 4096


@dataclass(frozen=True)
class ExecRequest:
    """One command to run inside a guest (see Exec). argv[0] is a path inside the guest."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes = b""
    timeout: float = 300.0
    output_limit: int = 65536  # bytes kept of stdout, and of stderr

    def check(self) -> None:
        """Invalid for what no guest can carry (a NUL in a C string, an empty command, a bad name)."""
        if not self.argv or not self.argv[0]:
            raise Invalid("exec needs a command")
        if any("\0" in a for a in self.argv):
            raise Invalid("exec arguments may not hold NUL")
        for key, value in self.env.items():
            if not key or "=" in key or "\0" in key or "\0" in value:
                raise Invalid(f"bad environment variable name {key!r}")
        if self.timeout <= 0 or self.output_limit < 0:
            raise Invalid("exec needs a positive timeout and a non-negative output limit")


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when the command did not exit by itself (killed, timed out)
    signal: int | None  # the signal that ended it, if one did
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    timed_out: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON primitives (the bus): the outputs as text, undecodable bytes replaced."""
        return {"exit_code": self.exit_code, "signal": self.signal,
                "stdout": self.stdout.decode(errors="replace"), "stderr": self.stderr.decode(errors="replace"),
                "stdout_truncated": self.stdout_truncated, "stderr_truncated": self.stderr_truncated,
                "timed_out": self.timed_out, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ExecResult:
        return cls(exit_code=None if doc.get("exit_code") is None else int(doc["exit_code"]),
                   signal=None if doc.get("signal") is None else int(doc["signal"]),
                   stdout=str(doc.get("stdout") or "").encode(), stderr=str(doc.get("stderr") or "").encode(),
                   stdout_truncated=bool(doc.get("stdout_truncated")),
                   stderr_truncated=bool(doc.get("stderr_truncated")),
                   timed_out=bool(doc.get("timed_out")), seconds=float(doc.get("seconds") or 0.0))


def bound_output(data: bytes, limit: int) -> tuple[bytes, bool]:
    """`data` kept to `limit` bytes as Exec says: the first EXEC_HEAD and the last limit - EXEC_HEAD
    bytes (half and half when limit <= EXEC_HEAD); whether anything was dropped."""
    if len(data) <= limit:
        return data, False
    head = EXEC_HEAD if limit > EXEC_HEAD else limit // 2
    tail = limit - head
    return data[:head] + (data[-tail:] if tail else b""), True
