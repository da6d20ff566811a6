"""One backend per OCCI kind, each over a Cumulo service (never over the OpenStack HTTP APIs)."""
