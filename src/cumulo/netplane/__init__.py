"""The host data plane of Cumulo's networks: namespaces, bridges, veth and tap devices, nftables, dnsmasq and routers (no DB, no bus)."""
