"""The API side of compute: the services the HTTP handlers in compute/api/ call (servers and their
actions, flavors, keypairs, quotas, listing, aggregates and hosts). Nothing here runs on a compute
host; the agent side is compute/agent/, the shared kernel sits at the top of compute/."""
