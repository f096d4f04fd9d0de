"""Data: dataset sources, long-tailed profiles, preprocessing (normalise, ZCA), DSA."""
