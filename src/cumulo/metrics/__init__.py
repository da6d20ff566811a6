"""Prometheus instruments of the control plane (control.py) and request latency per API route
(http.py). They are process-wide and import nothing above them; the bus and the scheduler record
into them. cumulo.monitoring's `endpoint.build_registry` puts them, the process collector and one
cloud's server collector into the registry a scrape renders.
"""
