"""Click parameter types whose choices are read from a registry when first needed.

``--data`` and ``hafcls hierarchy build SOURCE`` list whatever is registered, so a new dataset
or source appears in the CLI without touching it; the registry (and the modules that fill it)
is imported only when the choices are shown or checked, keeping ``hafcls --help`` light.
"""

from __future__ import annotations

import click

from hafcls.registry import Registry


class RegistryChoice(click.Choice):
    """``click.Choice`` over a registry's names (aliases accepted, mapped to the name); an
    unknown name raises the registry's :class:`~hafcls.errors.HafclsError`."""

    def __init__(self, registry: Registry, case_sensitive: bool = True):
        self.registry = registry
        super().__init__((), case_sensitive)

    @property
    def choices(self):  # read on use: the registry fills when its package is imported
        return tuple(self.registry.names())

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns; the registry decides
        pass

    def convert(self, value, param, ctx):
        # an unknown name raises the registry's own error (listing the names), exit code 2
        return self.registry.canonical(value)
