"""An independent oracle for API response shapes: JSON Schemas (draft 2020-12) built from the
OpenStack API references (Nova compute api-ref + its api_samples, Keystone v3 api-ref, Glance v2
api-ref), written without looking at Cumulo's own views.

    from reference import nova            # (or tests.reference, depending on sys.path)
    nova.schema("server", "2.47", admin=True)   -> dict (JSON Schema)
    check(body, nova.schema(...))               -> raises ShapeError listing every difference

Every object is `additionalProperties: false` and lists in `required` each field the reference
shows for that version, so a missing or an extra field is an error.
"""

from __future__ import annotations

from ._common import ShapeError, check, shape_errors

__all__ = ["ShapeError", "check", "shape_errors"]
