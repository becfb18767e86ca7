"""The live path from camera to screen: source -> capture thread -> processing thread -> publisher.

Read top to bottom: ``sources`` (what frames come from), ``capture`` (the capture thread, re-opening
with back-off), ``processor`` (rolling focal stack, engine, motion guard), ``pipeline`` (the threads
and the fail-safe), ``publisher`` (encode once, one latest-only slot per client), ``metrics``.
"""
