"""What the API and the worker both import: settings, models, migrations, the job contract, Redis helpers."""
