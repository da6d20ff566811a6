"""HTTP plumbing shared by every API family: JSON bodies, faults, authentication, dispatch, OpenAPI."""
