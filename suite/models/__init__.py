"""Model presets (YAML beside this file), loading, and the task model wrapper."""
