"""Helpers shared by the tests: real servers, real clients, the real emulator."""
