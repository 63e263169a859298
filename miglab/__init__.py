"""miglab."""
