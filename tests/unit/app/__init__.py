"""The application layer without a store: settings, policy files, middleware, recording."""
