"""Prometheus metrics: the control plane's instruments (control.py), the per-server series the
compute agents sample from their drivers at scrape time (servers.py), request latency per API
route (http.py) and the admin-only scrape endpoint on its own listen address (endpoint.py).

The instruments are process-wide; `endpoint.build_registry` puts them, the process collector and
one cloud's server collector into the registry a scrape renders.
"""
