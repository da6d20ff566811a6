"""The PaaS engine: tasks as persisted step graphs, run, resumed and rolled back (see base.py)."""
