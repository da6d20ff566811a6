"""The /paas HTTP front door (paas/api/app.py)."""
