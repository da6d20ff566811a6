"""The scheduler: filters and weighers over the compute nodes (Nova's FilterScheduler), answering
`select_destinations`; it reads hosts and placement and imports no service package."""
