"""The network agent: one per compute host, on the bus topic `network.<host>`, making the host's
data plane (cumulo.netplane) match the DB. `state` reads what the host should have (a pure plan),
`plumbing` applies a plan (real, or nothing on a fake host), `manager` serves the bus messages."""
