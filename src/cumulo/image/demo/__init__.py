"""The demo images, seeded at start-up (not part of the image service): the busybox container
image (`busybox`), the tiny VM (`tinyvm` builds it, `vm` registers it and builds it in the
background), and `seeder`, which `runtime` starts after the image service and stops with it."""
