"""Glance's metadata definitions catalog (metadefs): namespaces of property, object and tag
definitions, associated with resource types (OS::Glance::Image, OS::Nova::Flavor, ...).

The catalog starts empty but for Glance's five built-in resource types; Glance's sample namespace
files (OS::Compute::*, ...) are not loaded. Writes are admin-only (Glance's default policy); reads
follow the namespace's visibility: public ones for every project, private ones for their owner.
"""
