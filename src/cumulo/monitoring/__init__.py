"""Monitoring: the per-server series the compute agents sample from their drivers at scrape time
(servers) and the admin-only Prometheus scrape endpoint on its own listen address (endpoint). The
control plane's own instruments live below, in cumulo.metrics."""
