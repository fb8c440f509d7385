"""Command-line shell: parse -> load config -> pipeline. No logic lives here."""
