"""The compute agent: what runs on each compute host.

manager.py serves the host's bus topic (ComputeHost) and runs each of its nodes (ComputeManager:
lifecycle and bus endpoints only); node.py is the `Node` every workflow takes; the workflows are
build.py, power.py, resize.py, snapshot.py, backup_rotation.py, reclaim.py, reconcile.py, plus
the periodic imagecache.py and the metrics side, usage.py.
"""
