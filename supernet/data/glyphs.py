"""Moved: `python -m imagedata.glyphs` renders the glyph dataset now."""

import sys

if __name__ == "__main__":
    sys.exit("python -m supernet.data.glyphs moved: run python -m imagedata.glyphs " + " ".join(sys.argv[1:]))
