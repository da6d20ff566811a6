"""Every static OCCI category: the Core kinds (GFD.221), the Infrastructure kinds, actions and mixins
(GFD.224), the 1.1 storage actions EGI clients still send (GFD.184), and the contextualization mixins
in the OCCI 1.2 and the ooi/OCCI-OS (OpenStack) schemes.

`required` is the attribute property of GFD.221 §4.3.2: the CLIENT must supply the attribute at
creation. The spec's multiplicity-1 attributes the provider sets (the states, occi.core.id, the
interface name, MAC, device id, an interface's address) are therefore not `required`, as both the
GFD.185 Query Interface example (`occi.storage.size{required} occi.storage.state{immutable}`) and the
JSON rendering's Kind example (`occi.compute.state`: mutable false, required false) render them.

Mixins that come from data (os_tpl per image, resource_tpl per flavor, user mixins) are not here;
their parents `OS_TPL`/`RESOURCE_TPL` are. Look-ups are by category id (scheme + term).
"""

from __future__ import annotations

from cumulo.occi.model import CORE, INFRA, Action, Attribute, Category, Kind, Mixin

COMPUTE_ACTION = "http://schemas.ogf.org/occi/infrastructure/compute/action#"
STORAGE_ACTION = "http://schemas.ogf.org/occi/infrastructure/storage/action#"
NETWORK_ACTION = "http://schemas.ogf.org/occi/infrastructure/network/action#"
NETWORK_SCHEME = "http://schemas.ogf.org/occi/infrastructure/network#"
NETWORKINTERFACE_SCHEME = "http://schemas.ogf.org/occi/infrastructure/networkinterface#"
CREDENTIALS_SCHEME = "http://schemas.ogf.org/occi/infrastructure/credentials#"
COMPUTE_SCHEME = "http://schemas.ogf.org/occi/infrastructure/compute#"
OPENSTACK_INSTANCE_SCHEME = "http://schemas.openstack.org/compute/instance#"
OPENSTACK_CREDENTIALS_SCHEME = "http://schemas.openstack.org/instance/credentials#"


def _state(prefix: str, values: tuple[str, ...], what: str) -> tuple[Attribute, Attribute]:
    return (
        Attribute(f"{prefix}.state", "enum", mutable=False, enum=values,
                  description=f"Current state of the {what}."),
        Attribute(f"{prefix}.state.message", "string", mutable=False,
                  description="Human-readable explanation of the current state."),
    )


# --- Core (GFD.221 §4.5; attribute names from GFD.229 §4.5.1) ------------------------------------

ENTITY = Kind(
    CORE, "entity", "Entity",
    attributes=(
        Attribute("occi.core.id", "string", mutable=False,
                  description="A unique identifier of the entity within the provider's name-space."),
        Attribute("occi.core.title", "string", description="The display name of the instance."),
    ),
)
RESOURCE = Kind(
    CORE, "resource", "Resource", parent=ENTITY.id, location="/resource/",
    attributes=(
        Attribute("occi.core.summary", "string",
                  description="A summarizing description of the resource instance."),
    ),
)
LINK = Kind(
    CORE, "link", "Link", parent=ENTITY.id, location="/link/",
    attributes=(
        Attribute("occi.core.source", "string", required=True,
                  description="The location of the resource the link originates from."),
        Attribute("occi.core.target", "string", required=True,
                  description="The location of the resource the link points to."),
        Attribute("occi.core.source.kind", "string",
                  description="The kind of the source resource (implied by the source)."),
        Attribute("occi.core.target.kind", "string", description="The kind of the target, if applicable."),
    ),
)

# --- Infrastructure actions (GFD.224 §3.1-3.3; 1.1 storage actions from GFD.184) ------------------

START = Action(COMPUTE_ACTION, "start", "Start the compute instance")
STOP = Action(
    COMPUTE_ACTION, "stop", "Stop the compute instance",
    attributes=(Attribute("method", "enum", enum=("graceful", "acpioff", "poweroff"), default="graceful",
                          description="How to stop: graceful (shut down), acpioff, poweroff."),),
)
RESTART = Action(
    COMPUTE_ACTION, "restart", "Restart the compute instance",
    attributes=(Attribute("method", "enum", enum=("graceful", "warm", "cold"), default="graceful",
                          description="graceful and warm reboot the guest; cold resets it."),),
)
SUSPEND = Action(
    COMPUTE_ACTION, "suspend", "Suspend the compute instance",
    attributes=(Attribute("method", "enum", enum=("hibernate", "suspend"), default="suspend",
                          description="hibernate (to disk) or suspend (keep the memory)."),),
)
SAVE = Action(
    COMPUTE_ACTION, "save", "Save the compute instance as a new OS template",
    attributes=(
        Attribute("method", "enum", enum=("hot", "deferred"), default="hot",
                  description="hot (now) or deferred (when the instance stops)."),
        Attribute("name", "string", description="The name of the new OS template."),
    ),
)
ONLINE = Action(STORAGE_ACTION, "online", "Bring the storage online")
OFFLINE = Action(STORAGE_ACTION, "offline", "Take the storage offline")
BACKUP = Action(STORAGE_ACTION, "backup", "Back the storage up (OCCI 1.1)")
SNAPSHOT = Action(STORAGE_ACTION, "snapshot", "Snapshot the storage (OCCI 1.1)")
RESIZE = Action(
    STORAGE_ACTION, "resize", "Resize the storage (OCCI 1.1)",
    attributes=(Attribute("size", "number", required=True, description="The new size in GiB."),),
)
UP = Action(NETWORK_ACTION, "up", "Bring the network up")
DOWN = Action(NETWORK_ACTION, "down", "Take the network down")

# --- Infrastructure kinds ----------------------------------------------------------------------

COMPUTE = Kind(
    INFRA, "compute", "Compute Resource", parent=RESOURCE.id, location="/compute/",
    actions=(START.id, STOP.id, RESTART.id, SUSPEND.id, SAVE.id),
    attributes=(
        Attribute("occi.compute.architecture", "enum", enum=("x86", "x64"),
                  description="CPU architecture of the instance."),
        Attribute("occi.compute.cores", "integer", description="Number of virtual CPU cores assigned to the instance."),
        Attribute("occi.compute.hostname", "string", description="Fully qualified DNS hostname for the instance."),
        Attribute("occi.compute.share", "integer", description="Relative number of CPU shares for the instance."),
        Attribute("occi.compute.memory", "number", description="Maximum RAM in gigabytes (GiB) allocated to the instance."),
        *_state("occi.compute", ("active", "inactive", "suspended", "error"), "instance"),
    ),
)
STORAGE = Kind(
    INFRA, "storage", "Storage Resource", parent=RESOURCE.id, location="/storage/",
    actions=(ONLINE.id, OFFLINE.id, BACKUP.id, SNAPSHOT.id, RESIZE.id),
    attributes=(
        Attribute("occi.storage.size", "number", required=True, description="Storage size of the instance in gigabytes (GiB)."),
        *_state("occi.storage", ("online", "offline", "error"), "instance"),
    ),
)
NETWORK = Kind(
    INFRA, "network", "Network Resource", parent=RESOURCE.id, location="/network/",
    actions=(UP.id, DOWN.id),
    attributes=(
        Attribute("occi.network.vlan", "integer", description="802.1q VLAN identifier (0-4095)."),
        Attribute("occi.network.label", "string", pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",  # an RFC 7230 token
                  description="Tag based VLANs (e.g. external-dmz)."),
        *_state("occi.network", ("active", "inactive", "error"), "instance"),
    ),
)
NETWORKINTERFACE = Kind(
    INFRA, "networkinterface", "NetworkInterface Link", parent=LINK.id, location="/networkinterface/",
    attributes=(
        Attribute("occi.networkinterface.interface", "string", mutable=False,
                  description="Identifier that relates the link to the link's device interface."),
        Attribute("occi.networkinterface.mac", "string",
                  description="MAC address associated with the link's device interface."),
        *_state("occi.networkinterface", ("active", "inactive", "error"), "link"),
    ),
)
STORAGELINK = Kind(
    INFRA, "storagelink", "StorageLink Link", parent=LINK.id, location="/storagelink/",
    attributes=(
        Attribute("occi.storagelink.deviceid", "string",
                  description="Device identifier as defined by the OCCI service provider."),
        Attribute("occi.storagelink.mountpoint", "string",
                  description="Point to where the storage is mounted in the guest OS."),
        *_state("occi.storagelink", ("active", "inactive", "error"), "link"),
    ),
)

# --- Infrastructure mixins ---------------------------------------------------------------------

IPNETWORK = Mixin(
    NETWORK_SCHEME, "ipnetwork", "IP Network Mixin", applies=(NETWORK.id,), location="/ipnetwork/",
    attributes=(
        Attribute("occi.network.address", "string",
                  description="Internet Protocol (IP) network address in CIDR notation (e.g. 192.168.0.0/24, fc00::/7)."),
        Attribute("occi.network.gateway", "string", description="Internet Protocol (IP) gateway address (e.g. 192.168.0.1)."),
        Attribute("occi.network.allocation", "enum", enum=("dynamic", "static"),
                  description="Address allocation: dynamic (DHCP) or static (user supplied)."),
    ),
)
IPNETWORKINTERFACE = Mixin(
    NETWORKINTERFACE_SCHEME, "ipnetworkinterface", "IP Network Interface Mixin",
    applies=(NETWORKINTERFACE.id,), location="/ipnetworkinterface/",
    attributes=(
        Attribute("occi.networkinterface.address", "string",
                  description="Internet Protocol (IP) address of the link (e.g. 192.168.0.5)."),
        Attribute("occi.networkinterface.gateway", "string", description="Internet Protocol (IP) gateway address."),
        Attribute("occi.networkinterface.allocation", "enum", enum=("dynamic", "static"),
                  description="Address allocation: dynamic (DHCP) or static (user supplied)."),
    ),
)
OS_TPL = Mixin(INFRA, "os_tpl", "OS Template", applies=(COMPUTE.id,), location="/os_tpl/")
RESOURCE_TPL = Mixin(INFRA, "resource_tpl", "Resource Template", applies=(COMPUTE.id,), location="/resource_tpl/")
SSH_KEY = Mixin(
    CREDENTIALS_SCHEME, "ssh_key", "Credentials Mixin", applies=(COMPUTE.id,), location="/ssh_key/",
    attributes=(
        Attribute("occi.credentials.ssh.publickey", "string", required=True,
                  description="The contents of the public key file to be injected into the compute instance."),
    ),
)
USER_DATA = Mixin(
    COMPUTE_SCHEME, "user_data", "Contextualization Mixin", applies=(COMPUTE.id,), location="/user_data/",
    attributes=(
        Attribute("occi.compute.userdata", "string", required=True,
                  description="Contextualization data (e.g. a script) the instance runs at the end of its boot."),
    ),
)
# ooi / OCCI-OS (OpenStack) contextualization: user_data is base64 there.
OPENSTACK_USER_DATA = Mixin(
    OPENSTACK_INSTANCE_SCHEME, "user_data", "Contextualization extension - user_data", applies=(COMPUTE.id,),
    location="/openstack/user_data/",
    attributes=(
        Attribute("org.openstack.compute.user_data", "string", required=True,
                  description="Base64-encoded contextualization data."),
    ),
)
OPENSTACK_PUBLIC_KEY = Mixin(
    OPENSTACK_CREDENTIALS_SCHEME, "public_key", "Contextualization extension - public_key", applies=(COMPUTE.id,),
    location="/openstack/public_key/",
    attributes=(
        Attribute("org.openstack.credentials.publickey.name", "string", description="The name of the key pair."),
        Attribute("org.openstack.credentials.publickey.data", "string", required=True,
                  description="The public key to inject."),
    ),
)

KINDS: dict[str, Kind] = {k.id: k for k in (ENTITY, RESOURCE, LINK, COMPUTE, STORAGE, NETWORK, NETWORKINTERFACE, STORAGELINK)}
ACTIONS: dict[str, Action] = {
    a.id: a for a in (START, STOP, RESTART, SUSPEND, SAVE, ONLINE, OFFLINE, BACKUP, SNAPSHOT, RESIZE, UP, DOWN)
}
MIXINS: dict[str, Mixin] = {
    m.id: m
    for m in (IPNETWORK, IPNETWORKINTERFACE, OS_TPL, RESOURCE_TPL, SSH_KEY, USER_DATA, OPENSTACK_USER_DATA,
              OPENSTACK_PUBLIC_KEY)
}
ALL: tuple[Category, ...] = (*KINDS.values(), *MIXINS.values(), *ACTIONS.values())

# Attributes the provider fills in even though the spec's multiplicity is 1 (a client need not send
# them on create): the id, the interface name, MAC, device id and the interface's address.
PROVIDER_ASSIGNED: frozenset[str] = frozenset({
    "occi.core.id", "occi.networkinterface.interface", "occi.networkinterface.mac", "occi.storagelink.deviceid",
    "occi.networkinterface.address", "occi.networkinterface.allocation",
})
# OCCI 1.1 attributes 1.2 dropped: accepted from 1.1 clients and ignored (validate drops them).
LEGACY_ATTRIBUTES: dict[str, frozenset[str]] = {COMPUTE.id: frozenset({"occi.compute.speed"})}
# Integer ranges the attribute types cannot say.
RANGES: dict[str, tuple[int, int]] = {"occi.network.vlan": (0, 4095), "occi.compute.cores": (1, 1 << 16),
                                      "occi.compute.share": (0, 1 << 20)}
# String formats checked by validate: "cidr" (network address), "ip" (an address), "ip_or_cidr".
FORMATS: dict[str, str] = {
    "occi.network.address": "cidr", "occi.network.gateway": "ip",
    "occi.networkinterface.address": "ip_or_cidr", "occi.networkinterface.gateway": "ip",
}


def get(category_id: str) -> Category | None:
    """A static kind, mixin or action by id."""
    return KINDS.get(category_id) or MIXINS.get(category_id) or ACTIONS.get(category_id)


def kind_by_term(term: str) -> Kind | None:
    """An instantiable kind by the first segment of its location ("compute" -> COMPUTE)."""
    for k in KINDS.values():
        if k.location == f"/{term}/":
            return k
    return None


def ancestry(kind_id: str) -> list[Kind]:
    """The kind and its parents, most specific first ([] for an unknown kind)."""
    out: list[Kind] = []
    k = KINDS.get(kind_id)
    while k is not None and k not in out:
        out.append(k)
        k = KINDS.get(k.parent) if k.parent else None
    return out


def attributes_of(kind_id: str) -> dict[str, Attribute]:
    """Every attribute a kind defines, its parents' included (occi.core.*)."""
    out: dict[str, Attribute] = {}
    for k in reversed(ancestry(kind_id)):
        out.update({a.name: a for a in k.attributes})
    return out


def is_link_kind(kind_id: str) -> bool:
    """True for link and its sub-kinds (networkinterface, storagelink)."""
    return any(k.id == LINK.id for k in ancestry(kind_id))


def action_of(kind_id: str, term_or_id: str) -> Action | None:
    """The action of a kind by term ("stop") or full id; None when the kind has no such action."""
    for k in ancestry(kind_id):
        for aid in k.actions:
            if aid == term_or_id or aid.split("#", 1)[-1] == term_or_id:
                return ACTIONS.get(aid)
    return None
