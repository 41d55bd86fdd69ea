"""Former name of :mod:`hafcls.hierarchy.label_tree`, kept while the sources still import it."""

from hafcls.hierarchy.label_tree import Hierarchy
from hafcls.validation import read_user_text as read_text

__all__ = ["Hierarchy", "read_text"]
