"""The Cinder v3 API (block-storage / volumev3), served at /volume: `app.make_app`."""
