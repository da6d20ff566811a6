"""The settings file's `extra:` keys, parsed once into one typed dataclass per driver or subsystem."""

from __future__ import annotations

from pathlib import Path

import pytest

from cumulo import conf as conf_mod


def _load(tmp_path: Path, text: str) -> conf_mod.Settings:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    return conf_mod.load(cfg, env={})


def test_defaults_without_extra() -> None:
    s = conf_mod.load(env={})
    assert s.runc == conf_mod.RuncSettings() and s.runc.stop_grace == 10.0 and s.runc.pids_limit == 1024
    assert s.qemu.accel == "auto" and s.qemu.boot_timeout == 90.0 and s.qemu.direct_kernel_machine == "microvm"
    assert s.scheduler.filters == () and s.scheduler.ram_weight_multiplier == 1.0
    assert s.servicegroup.service_down_time == 60.0 and s.servicegroup.report_interval == 10.0
    assert (s.reserved_host.cpus, s.reserved_host.memory_mb, s.reserved_host.disk_gb) == (0, 0, 0)
    assert s.conductor.build_concurrency == 32 and s.fake.instance_types == ()
    assert s.demo_images.tiny_vm_image == "auto" and s.demo_images.image_build_cache is None


def test_file_extra_keys_become_typed_sections(tmp_path: Path) -> None:
    s = _load(
        tmp_path,
        "extra:\n"
        "  runc_stop_grace: '0.5'\n"
        "  runc_root_disk: ext4\n"
        "  qemu_tsc_khz: 2000000\n"
        "  scheduler_filters: ComputeFilter, RamFilter\n"
        "  scheduler_weighers: [CPUWeigher]\n"
        "  ram_weight_multiplier: -1\n"
        "  reserved_host_memory_mb: 512\n"
        "  service_down_time: 30\n"
        "  fake_instance_types: [qemu, kvm]\n"
        "  image_build_cache: /var/cache/x\n"
        "  conductor_build_concurrency: 2\n",
    )
    assert s.runc.stop_grace == 0.5 and s.runc.root_disk == "ext4"
    assert s.qemu.tsc_khz == 2000000
    assert s.scheduler.filters == ("ComputeFilter", "RamFilter") and s.scheduler.weighers == ("CPUWeigher",)
    assert s.scheduler.ram_weight_multiplier == -1.0 and isinstance(s.scheduler.ram_weight_multiplier, float)
    assert s.reserved_host.memory_mb == 512 and s.servicegroup.service_down_time == 30.0
    assert s.fake.instance_types == ("qemu", "kvm")
    assert s.demo_images.image_build_cache == Path("/var/cache/x")
    assert s.conductor.build_concurrency == 2


def test_unknown_extra_key_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runc_stop_gracee"):
        _load(tmp_path, "extra:\n  runc_stop_gracee: 1\n")
    with pytest.raises(ValueError, match="scheduler_filter\\b"):
        conf_mod.load(env={}).replace(extra={"scheduler_filter": "RamFilter"})


def test_bad_extra_value_is_an_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runc_pids_limit"):
        _load(tmp_path, "extra:\n  runc_pids_limit: lots\n")
    with pytest.raises(ValueError, match="qemu_stop_timeout"):
        conf_mod.load(env={}).replace(extra={"qemu_stop_timeout": [1]})
    with pytest.raises(ValueError, match="extra"):
        _load(tmp_path, "extra: [runc_stop_grace]\n")


def test_sections_are_not_top_level_settings(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runc"):
        _load(tmp_path, "runc:\n  stop_grace: 1\n")


def test_null_or_empty_keeps_the_default_and_replace_reparses() -> None:
    s = conf_mod.load(env={}, extra={"qemu_tsc_khz": None, "scheduler_filters": ""})
    assert s.qemu.tsc_khz == 0 and s.scheduler.filters == ()
    t = s.replace(extra={"runc_spawn_delay": 5.0})
    assert t.runc.spawn_delay == 5.0 and t.qemu == conf_mod.QemuSettings()


def test_extra_image_size_cap_still_overrides_the_setting() -> None:
    assert conf_mod.load(env={}, extra={"image_size_cap": 4 << 20}).image_size_cap == 4 << 20
    assert conf_mod.load(env={}, image_size_cap=5).image_size_cap == 5
