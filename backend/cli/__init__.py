"""The command line: palettenet recolor/palette/info/serve/broker/keys/bench, image files,
the quick start's demo. On top of backend.service and backend.core."""
