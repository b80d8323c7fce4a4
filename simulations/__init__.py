"""Simulation scenarios (TOML) and the GATE 10 (opengate) drivers that build them."""
