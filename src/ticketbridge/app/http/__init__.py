"""The HTTP face: the app factory, dependencies, schemas, middleware, limits and routes."""
