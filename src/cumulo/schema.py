"""Every domain's tables in one `cumulo.db.metadata`: importing this module registers them all.

It sits beside runtime, above the service packages whose models it imports; cumulo.db itself knows
no domain. The migration tests compare the migrated schema with this metadata, and Alembic's
autogenerate (a developer's tool) reads it through the migration environment's `target_metadata`.
"""

from cumulo.compute import models as compute_models  # noqa: F401
from cumulo.hosts import models as hosts_models  # noqa: F401
from cumulo.identity import models as identity_models  # noqa: F401
from cumulo.image import models as image_models  # noqa: F401
from cumulo.network import models as network_models  # noqa: F401
from cumulo.occi import models as occi_models  # noqa: F401
from cumulo.paas import models as paas_models  # noqa: F401
from cumulo.placement import models as placement_models  # noqa: F401
from cumulo.volume import models as volume_models  # noqa: F401
