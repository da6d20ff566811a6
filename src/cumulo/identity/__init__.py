"""Identity (Keystone v3): users, projects, domains, roles, tokens, application credentials, the catalog."""
