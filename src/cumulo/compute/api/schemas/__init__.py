"""Request validation for the compute API: Nova's parameter types, format checks and error wording.

Each resource has a module here. A resource's schemas for later microversions are derived from the
earlier ones (deepcopy + change), and `Versioned` picks the one for the negotiated version, so no
handler carries version `if`s for request shapes. The parameter types, format checks, `validate`
and `Versioned` they share are in the private `_base`.
"""
