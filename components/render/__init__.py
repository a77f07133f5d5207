"""Renderers: pure functions settings -> files, shared by the components and the live tests."""
