"""The CLI's commands, one module per family; `syncd.cli` parses arguments and dispatches here."""
