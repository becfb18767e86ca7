"""HTTP and websocket routes, one module per topic; each is thin and calls the live/service logic."""
