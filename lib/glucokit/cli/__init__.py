"""The command line: one module per command group.

The outermost layer: it may import everything, tooling included.
"""
