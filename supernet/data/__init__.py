"""Moved: the data package is `imagedata/` (datasets, loaders, transforms, glyphs). Only the old command
`python -m supernet.data.glyphs` is kept here, to say where it went."""
