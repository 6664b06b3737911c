"""Small helpers every part uses: atomic writes, seeded streams, digests, progress, image grids, devices."""
