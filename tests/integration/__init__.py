"""Code on a real database (SQLite and PostgreSQL), without the HTTP app or processes."""
