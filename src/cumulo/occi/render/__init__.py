"""OCCI renderings: text/plain, text/occi (headers), text/uri-list and application/occi+json."""
