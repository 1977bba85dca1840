"""Extensions: one module per extension behind the small interface in ``base``.

Built-ins and third-party handlers are found the same way, through the
``extworker.extensions`` entry-point group (see ``registry``).
"""

from .base import Extension, ExtensionContext, ExtensionResult

__all__ = ["Extension", "ExtensionContext", "ExtensionResult"]
