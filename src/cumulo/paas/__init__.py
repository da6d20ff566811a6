"""The PaaS manager (issue 13): environments of tiers, products on real servers, and elasticity."""
