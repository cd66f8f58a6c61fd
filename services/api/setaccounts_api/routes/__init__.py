"""One router per concern; `app.py` mounts them."""
