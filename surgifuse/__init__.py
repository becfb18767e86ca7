"""SurgiFuse: real-time all-in-focus video for surgical microscopes.

The path from camera to screen: ``sources`` (frames) -> ``buffer.FocalStackBuffer`` (the last K
frames with their cached per-frame work) -> ``engines`` (fusion) -> ``live`` / ``service``
(publishing). ``synth`` makes focal stacks with truth, ``evaluation`` scores fusion.
"""

__version__ = "0.1.0"
