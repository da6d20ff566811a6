"""Hosts: what the scheduler and the admin APIs know about the machines. Service rows and liveness
(servicegroup), compute nodes and aggregates (models), and the zone an aggregate gives a host (zones).
Below the services: compute, the scheduler and the admin APIs read it; it imports none of them."""
