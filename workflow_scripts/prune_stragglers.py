"""Stub until the library function it calls lands (see issue 5); fails loudly, writes nothing."""

raise NotImplementedError("workflow_scripts/prune_stragglers.py: library function not wired in yet")
