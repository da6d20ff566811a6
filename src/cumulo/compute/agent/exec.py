"""The agent side of exec (compute.rpc exec_in_instance): a command inside a server of this node,
through its driver's Exec capability, for the PaaS manager's recipes.

The answer is the driver's ExecResult as JSON primitives (ExecResult.to_dict: the outputs as text,
bounded by the driver). The exec is not an instance action: the caller records what it ran and what
came back. A server this node does not have is NotFound; a driver without exec, or a server that
does not run, is InvalidState.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from cumulo.compute.agent.node import Node
from cumulo.compute.drivers.base import Capability, driver_for
from cumulo.compute.drivers.execspec import ExecRequest
from cumulo.errors import Invalid, NotFound

MAX_STDIN = 8 << 20  # bytes of stdin an exec may carry (PAAS.md 3.6)
MAX_OUTPUT = 1 << 20  # the largest output_limit a caller may ask for, per stream


def request_of(argv: Sequence[str], env: Mapping[str, str], stdin_b64: str, timeout: float,
               output_limit: int) -> ExecRequest:
    """The ExecRequest of an exec_in_instance message; Invalid for what no driver should see."""
    if not isinstance(argv, list | tuple) or not argv or not all(isinstance(a, str) for a in argv):
        raise Invalid("exec needs argv, a non-empty list of strings")
    if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise Invalid("exec env must map strings to strings")
    try:
        stdin = base64.b64decode(stdin_b64 or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise Invalid("exec stdin_b64 is not base64") from None
    if len(stdin) > MAX_STDIN:
        raise Invalid(f"exec stdin is {len(stdin)} bytes, more than {MAX_STDIN}")
    if not 0 < float(timeout) <= 24 * 3600:
        raise Invalid("exec timeout must be between 0 and 86400 seconds")
    if not 0 <= int(output_limit) <= MAX_OUTPUT:
        raise Invalid(f"exec output_limit must be between 0 and {MAX_OUTPUT}")
    return ExecRequest(argv=tuple(argv), env=dict(env), stdin=stdin, timeout=float(timeout),
                       output_limit=int(output_limit))


async def exec_in(node: Node, uuid: str, argv: Sequence[str], env: Mapping[str, str], stdin_b64: str,
                  timeout: float, output_limit: int) -> dict[str, Any]:
    req = request_of(argv, env, stdin_b64, timeout, output_limit)
    if await node.load(uuid) is None:
        raise NotFound(f"Instance {uuid} could not be found.")
    result = await driver_for(node.driver, Capability.EXEC, node=node.name).exec_in(uuid, req)
    return result.to_dict()
