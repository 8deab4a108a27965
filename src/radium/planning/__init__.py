"""Plans: validation, authoring (markdown/JSON parsing, generation) and execution."""
