"""Collects every domain's tables into `cumulo.db.metadata` (imported for create_all and Alembic)."""

from cumulo.compute import models as compute_models  # noqa: F401
from cumulo.identity import models as identity_models  # noqa: F401
from cumulo.image import models as image_models  # noqa: F401
from cumulo.scheduler import models as scheduler_models  # noqa: F401
