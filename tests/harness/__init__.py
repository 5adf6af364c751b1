"""Test harness shared by the integration and system tiers: real dcosd processes on loopback."""
