"""`openstack paas ...`: the OSC plugin of the PaaS manager (entry point `openstack.cli.extension`).

OSC imports `plugin` on every `openstack` run, so nothing here imports Cumulo's server side
(starlette, SQLAlchemy, the services): only the Python standard library, PyYAML and the OSC
libraries (cliff, osc-lib, keystoneauth1). An import-linter contract keeps it that way.
"""
