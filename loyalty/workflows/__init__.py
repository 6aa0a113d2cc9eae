"""Workflows that span domains: each imports the domains at the top and is the one home of its steps."""
