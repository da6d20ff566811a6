"""The demo images (busybox, tiny-vm): seeded at start-up after the image service, not part of it.

The busybox container image (`busybox`), the tiny VM (`tinyvm` builds it, `vm` registers it and
builds it in the background), and `seeder`, which `runtime` starts after the image service and
stops with it."""
