"""Built-in products (builtin.py) and their recipe scripts (package data)."""
