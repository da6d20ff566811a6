"""Where a new volume can go: the one file backend's capabilities against its type's extra specs
(Cinder's CapabilitiesFilter).

A spec scoped `capabilities:` or unscoped and naming a capability the backend reports
(volume_backend_name, vendor_name, storage_protocol, driver_version, pool_name) must match it,
else no backend can take the volume: it goes to error with Cinder's "No valid backend" user
message (VOLUME_VOLUME_001_003). Values match as Cinder's extra_specs_ops do for strings: plain
equality, `<in> part`, `<or> a <or> b`, `<is> True`, `s== x`/`s!= x`. Unlike Cinder, a spec
naming a capability the backend does not report is ignored (Cinder fails the volume): so a type
carrying free-form specs still creates volumes here. Other scopes (RESKEY:, hw:, ...) are
never matched, as in Cinder.
"""

from __future__ import annotations

BACKEND = "cumulo"  # the volume_backend_name of the file store
VENDOR = "Cumulo"
DRIVER_VERSION = "1.0.0"
STORAGE_PROTOCOL = "file"  # sparse raw files attached by path (connection_info driver_volume_type cumulo_file)

CAPABILITIES = {"volume_backend_name": BACKEND, "vendor_name": VENDOR, "storage_protocol": STORAGE_PROTOCOL,
                "driver_version": DRIVER_VERSION, "pool_name": BACKEND}


def _match(have: str, req: str) -> bool:
    words = req.split()
    if len(words) >= 2 and words[0] == "<in>":
        return req.split(None, 1)[1] in have
    if words and words[0] == "<or>":
        return have in [w for w in words if w != "<or>"]
    if len(words) == 2 and words[0] == "<is>":
        return words[1].lower() == "true"  # every capability here is present
    if len(words) == 2 and words[0] in ("s==", "s!="):
        return (have == words[1]) == (words[0] == "s==")
    return have == req


def unmet(specs: dict[str, str]) -> str | None:
    """The first extra spec the backend cannot satisfy (None: the backend takes the volume)."""
    for key, req in sorted(specs.items()):
        scope = key.split(":")
        if len(scope) > 1 and scope[0] != "capabilities":
            continue
        name = scope[-1] if scope[0] == "capabilities" and len(scope) == 2 else key
        have = CAPABILITIES.get(name)
        if have is None:
            continue
        if name == "storage_protocol":
            have, req = have.lower(), req.lower()
        if not _match(have, str(req)):
            return f"{key}={req}"
    return None
