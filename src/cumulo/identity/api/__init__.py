"""The Keystone v3 compatible API (a subset), mounted at /identity: one module per resource.

`app.make_app` builds the family's ASGI app from the resource modules' routes; `_common` holds
the caller checks and query parsing they share.
"""
