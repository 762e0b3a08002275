"""Flask extensions, one module each, every one with `init_app(app)`."""
