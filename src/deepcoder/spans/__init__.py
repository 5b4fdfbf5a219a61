"""Records → span-labelled token sequences: chat rendering, span strategies, teacher top-k
alignment, transcript importers and views."""
