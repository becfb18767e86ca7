"""The SurgiFuse web service: display page, websocket stream, stack upload, health, metrics, settings."""
