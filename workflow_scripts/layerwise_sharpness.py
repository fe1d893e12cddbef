"""Stub until the library function it calls lands (see issue 5); fails loudly, writes nothing."""

raise NotImplementedError("workflow_scripts/layerwise_sharpness.py: library function not wired in yet")
