"""block_device_mapping_v2 parsing (compute/service/bdm.py): the shapes Nova accepts, what they
become, and Nova's 400 messages for the ones it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from cumulo import errors
from cumulo.compute.service import bdm

IMG = "0e44cc9c-e052-415d-afbf-469b0d384170"
VOL = "5f0c7c2e-8a1b-4d6e-9f00-1234567890ab"
SNAP = "6a0c7c2e-8a1b-4d6e-9f00-1234567890ab"


def plan(*mappings: dict[str, Any], image: str | None = None, legacy: bool = False) -> bdm.BootPlan:
    server: dict[str, Any] = {"block_device_mapping" if legacy else "block_device_mapping_v2": list(mappings)}
    if image is not None:
        server["imageRef"] = image
    return bdm.parse(server)


def test_image_boot_without_mappings_and_with_image_to_local() -> None:
    assert bdm.parse({"imageRef": IMG}).image_ref == IMG
    p = plan({"uuid": IMG, "source_type": "image", "destination_type": "local", "boot_index": 0}, image=IMG)
    assert p.image_ref == IMG and not p.volume_backed and p.stored == []


def test_boot_from_an_existing_volume() -> None:
    p = plan({"uuid": VOL, "source_type": "volume", "destination_type": "volume", "boot_index": "0"})
    assert p.image_ref is None and p.volume_backed
    root = p.root
    assert root is not None and root["volume_id"] == VOL and root["boot_index"] == 0
    assert root["delete_on_termination"] is False and p.stored == [root]


def test_image_to_volume_snapshot_blank_ephemeral_and_swap() -> None:
    p = plan(
        {"uuid": IMG, "source_type": "image", "destination_type": "volume", "boot_index": 0, "volume_size": 2,
         "delete_on_termination": True},
        {"uuid": SNAP, "source_type": "snapshot", "destination_type": "volume", "boot_index": 1},
        {"source_type": "blank", "destination_type": "volume", "volume_size": 1, "boot_index": -1},
        {"source_type": "blank", "destination_type": "local", "volume_size": 1},
        {"source_type": "blank", "destination_type": "local", "guest_format": "swap", "volume_size": 64},
    )
    assert p.volume_backed and p.image_ref is None
    kinds = [(m["source_type"], m["destination_type"], m["boot_index"]) for m in p.mappings]
    assert kinds == [("image", "volume", 0), ("snapshot", "volume", 1), ("blank", "volume", None),
                     ("blank", "local", None), ("blank", "local", None)]
    assert p.mappings[0]["image_id"] == IMG and p.mappings[0]["delete_on_termination"] is True
    assert p.mappings[1]["snapshot_id"] == SNAP
    flavor = {"ephemeral_gb": 1, "swap": 128}
    bdm.check_sizes(p, flavor)
    assert bdm.local_sizes(p.mappings, flavor) == (1, 64)
    assert bdm.local_sizes([], flavor) == (1, 128)


def test_image_ref_with_data_volumes_gets_the_image_root() -> None:
    p = plan({"source_type": "blank", "destination_type": "volume", "volume_size": 1}, image=IMG)
    assert p.image_ref == IMG and not p.volume_backed
    assert p.mappings[0]["source_type"] == "image" and p.mappings[0]["boot_index"] == 0
    assert [m["source_type"] for m in p.stored] == ["blank"]


def test_legacy_mapping_onto_the_root_device_boots_from_the_volume() -> None:
    p = plan({"volume_id": VOL, "device_name": "vda", "delete_on_termination": "true"}, legacy=True)
    assert p.volume_backed and p.root is not None and p.root["delete_on_termination"] is True
    p = plan({"volume_id": VOL, "device_name": "/dev/vdb"}, legacy=True, image=IMG)
    assert not p.volume_backed and p.image_ref == IMG


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("two syntaxes", {"imageRef": IMG, "block_device_mapping": [{"volume_id": VOL}],
                      "block_device_mapping_v2": [{"source_type": "blank", "destination_type": "local"}]},
     "Using different block_device_mapping syntaxes is not allowed in the same request."),
    ("no source", {"block_device_mapping_v2": [{"uuid": VOL, "boot_index": 0}]},
     "Block Device Mapping is Invalid: Some required fields are missing"),
    ("blank with uuid", {"block_device_mapping_v2": [{"source_type": "blank", "uuid": VOL, "boot_index": 0,
                                                      "destination_type": "volume", "volume_size": 1}]},
     "Block Device Mapping is Invalid: Invalid device UUID."),
    ("volume without uuid", {"block_device_mapping_v2": [{"source_type": "volume", "boot_index": 0}]},
     "Block Device Mapping is Invalid: Missing device UUID."),
    ("image to local without imageRef", {"block_device_mapping_v2": [
        {"source_type": "image", "uuid": IMG, "destination_type": "local", "boot_index": 0}]},
     "Block Device Mapping is Invalid: Mapping image to local is not supported."),
    ("volume type on local", {"imageRef": IMG, "block_device_mapping_v2": [
        {"source_type": "blank", "destination_type": "local", "volume_type": "x"}]},
     "Specifying a volume_type with destination_type=local is not supported."),
    ("volume type on existing", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "volume", "boot_index": 0, "volume_type": "x"}]},
     "Specifying volume type to existing volume is not supported."),
    ("no boot index 0", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "volume", "boot_index": 1}]},
     "Boot sequence for the instance and image/block device mapping combination is not valid."),
    ("gap in boot indexes", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "volume", "boot_index": 0},
        {"source_type": "snapshot", "uuid": SNAP, "destination_type": "volume", "boot_index": 2}]},
     "Boot sequence for the instance and image/block device mapping combination is not valid."),
    ("two swaps", {"imageRef": IMG, "block_device_mapping_v2": [
        {"source_type": "blank", "destination_type": "local", "guest_format": "swap"},
        {"source_type": "blank", "destination_type": "local", "guest_format": "swap"}]},
     "More than one swap drive requested."),
    ("too many local", {"imageRef": IMG, "block_device_mapping_v2": [
        {"source_type": "blank", "destination_type": "local"}] * 4},
     "You specified more local devices than the limit allows"),
    ("bad boot index", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "volume", "boot_index": "x"}]},
     "Boot index is invalid."),
    ("blank volume without size", {"imageRef": IMG, "block_device_mapping_v2": [
        {"source_type": "blank", "destination_type": "volume"}]}, "a blank volume needs a volume_size."),
    ("volume to local", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "local", "boot_index": 0}]},
     "a volume maps to destination_type volume only."),
    ("bad uuid", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": "not-a-uuid", "destination_type": "volume", "boot_index": 0}]},
     "Block Device Mapping is Invalid: failed to get volume not-a-uuid."),
    ("nothing at all", {}, "Missing imageRef attribute"),
    ("same device twice", {"block_device_mapping_v2": [
        {"source_type": "volume", "uuid": VOL, "destination_type": "volume", "boot_index": 0, "device_name": "vda"},
        {"source_type": "snapshot", "uuid": SNAP, "destination_type": "volume", "device_name": "/dev/vda"}]},
     "Device name is used twice."),
]


@pytest.mark.parametrize(("case", "server", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_mappings_are_400_with_novas_message(case: str, server: dict[str, Any], message: str) -> None:
    with pytest.raises(errors.Invalid) as info:
        bdm.parse(server)
    assert message in info.value.message
    assert info.value.code == 400


def test_sizes_against_the_flavor() -> None:
    p = plan({"source_type": "blank", "destination_type": "local", "volume_size": 2}, image=IMG)
    with pytest.raises(errors.Invalid, match="Ephemeral disks requested are larger"):
        bdm.check_sizes(p, {"ephemeral_gb": 1, "swap": 0})
    p = plan({"source_type": "blank", "destination_type": "local", "guest_format": "swap", "volume_size": 512},
             image=IMG)
    with pytest.raises(errors.Invalid, match="Swap drive requested is larger"):
        bdm.check_sizes(p, {"ephemeral_gb": 0, "swap": 256})
    assert bdm.image_volume_size({"size": 64 << 20, "min_disk": 0}, None) == 1
    assert bdm.image_volume_size({"size": 3 << 30, "min_disk": 0}, 5) == 5
    with pytest.raises(errors.Invalid, match="Volume is smaller than the minimum size"):
        bdm.image_volume_size({"size": 0, "min_disk": 4}, 2)
