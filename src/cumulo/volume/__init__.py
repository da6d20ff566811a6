"""Block storage: Cinder's v3 API over volume records; the slow work goes to the volume worker."""
