"""Real-model tracks: the world of resolved pretrained LMs and packaged task items (``world``), the
evaluation data shipped in packages (``data``), and a sandbox for generated code (``sandbox``,
``code_eval``: HumanEval pass@1 inside lm-eval)."""
