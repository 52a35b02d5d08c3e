"""The command line, one module per command group (entry point: ``main.main``)."""
