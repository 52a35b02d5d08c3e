"""The documentation and the deployment examples agree with the code."""
