"""The compute conductor: the workflows that run between the API and the agents.

manager.py's `Conductor` serves the bus topic `conductor`: it schedules, claims and places builds
and casts them to the chosen host's agent, claims the new flavor of a resize before the agent
resizes, and recovers builds a crash left before any host took them.
"""
