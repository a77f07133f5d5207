"""Delivery workflow tooling: ephemeral pr-<N> stacks and the pull-request preview comment."""
