"""The `sea` command (command.py: parser, plugins, one-line errors; args.py: options from the config
dataclasses; stages.py, tools.py: the sub-commands; docs.py: docs/config.md)."""

from sea_align.cli.command import PLUGIN_GROUP, build_parser, main, parse

__all__ = ["PLUGIN_GROUP", "build_parser", "main", "parse"]
