"""Atlassian Statuspage: the sender port and the API client."""
