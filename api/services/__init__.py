"""Business logic; the blueprints stay thin and call these."""
