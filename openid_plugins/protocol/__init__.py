"""The OpenID wire protocol: pure functions and small classes, one module per concern.

Only ``fetch`` does network I/O; everything else is testable without a network.
"""
