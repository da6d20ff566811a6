"""The volume worker: serves `volume.<host>` and does the slow work on cumulo.blockstore."""
