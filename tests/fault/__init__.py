"""Real-process fault tests (crash, restart); marked ``fault``."""
