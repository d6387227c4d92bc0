"""Inference helpers shared by the bundles (test-time mirroring, post-processing, overlays).

Import the defining module (``medsegzoo.inference.<module>``); this package re-exports nothing.
"""
