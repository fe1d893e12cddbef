"""Subcommands of the ``interpsharp`` CLI, one module each (see ``interpsharp.cli``)."""
