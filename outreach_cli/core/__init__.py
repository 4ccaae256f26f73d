"""The functional core: never imports typer or rich."""
