"""Real-model track pieces: evaluation data shipped in packages and a sandbox for generated code."""
