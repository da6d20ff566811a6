"""Developer and test tools that set up a machine for Cumulo (`cumulo dev ...`)."""
