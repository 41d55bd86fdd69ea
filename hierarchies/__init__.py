"""Shipped label hierarchies (JSON), installed as hafcls._hierarchies; see hafcls.hierarchy.load."""
