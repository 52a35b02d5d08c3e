"""GitHub: follow-up issues and comments, their markers, and how GitHub's answers are read."""
