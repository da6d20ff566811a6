"""Cumulo: a compute cloud with OpenStack and OCCI front doors."""

__version__ = "0.1.0"
