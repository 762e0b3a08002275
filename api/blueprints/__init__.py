"""One blueprint per area: thin controllers that validate, call a service, and answer."""
