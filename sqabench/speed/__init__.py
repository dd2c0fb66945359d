"""The speed wing: a sweep of cells (variant x length x settings) planned, measured, written, tabled, drawn and
gated. It imports the shared base below it and never the quality wing."""
