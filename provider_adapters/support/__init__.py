"""Helpers the provider adapters share: option parsing, JSON values, images, transport set-up.

Nothing here knows a provider; each module has one job and no state.
"""
