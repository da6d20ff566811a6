"""Placement: resource providers (one per compute node, plus each host's shared pool), their
inventories with allocation ratios, and the allocations of consumers (instances), claimed
atomically by generation compare-and-swap (service). The vocabulary is in inventory, the tables in
models, the per-host shared pools in pools. Below the scheduler, which reads it; imports no service."""
