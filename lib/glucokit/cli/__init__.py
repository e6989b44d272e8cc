"""The ``glucokit`` command: one module per command group, each with an ``add_commands(commands, common)`` that
registers its commands and their handlers; main.py assembles the parser and turns failures into exit statuses.

The outermost layer: it may import everything, tooling included, and nothing imports it (docs/architecture.md).
"""
