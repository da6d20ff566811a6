"""The parts of a container image config that decide how its process runs, and the parsed image."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cumulo import errors


@dataclass(frozen=True)
class ImageConfig:
    """Entrypoint, Cmd, Env, WorkingDir, User and ExposedPorts of an image (Docker/OCI `config`)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        """The process the image runs by default: Entrypoint followed by Cmd."""
        return self.entrypoint + self.cmd

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImageConfig:
        return cls(
            entrypoint=tuple(data.get("entrypoint") or ()),
            cmd=tuple(data.get("cmd") or ()),
            env=tuple(data.get("env") or ()),
            working_dir=str(data.get("working_dir") or ""),
            user=str(data.get("user") or ""),
            exposed_ports=tuple(data.get("exposed_ports") or ()),
        )


@dataclass(frozen=True)
class ParsedImage:
    """A container image tarball, read: its format, config and layers (member names, base first)."""

    format: str  # "docker" or "oci"
    config: ImageConfig
    layers: list[str] = field(default_factory=list)


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.Invalid(f"Image config: {what} must be a list of strings.")
    return tuple(value)


def _string(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise errors.Invalid(f"Image config: {what} must be a string.")
    return value


def parse_config(raw: bytes) -> ImageConfig:
    """Read the runtime part of a Docker or OCI image config JSON document."""
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.Invalid(f"Image config is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise errors.Invalid("Image config must be a JSON object.")
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise errors.Invalid("Image config: 'config' must be an object.")
    ports = cfg.get("ExposedPorts") or {}
    if not isinstance(ports, dict):
        raise errors.Invalid("Image config: ExposedPorts must be an object.")
    env = _strings(cfg.get("Env"), "Env")
    if any("=" not in e for e in env):
        raise errors.Invalid("Image config: every Env entry must be NAME=value.")
    return ImageConfig(
        entrypoint=_strings(cfg.get("Entrypoint"), "Entrypoint"),
        cmd=_strings(cfg.get("Cmd"), "Cmd"),
        env=env,
        working_dir=_string(cfg.get("WorkingDir"), "WorkingDir"),
        user=_string(cfg.get("User"), "User"),
        exposed_ports=tuple(sorted(str(p) for p in ports)),
    )
