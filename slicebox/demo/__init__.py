"""``slicebox demo``: the main job a new user runs first."""
