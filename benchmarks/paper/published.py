"""The published numbers the report compares with (docs/paper-spec.md §7)."""

PUBLISHED = {  # CVPR15 Table 1, error in % (approx., see paper-spec §7)
    "HOGgle": (66.20, 13.7), "HOG": (28.10, 7.9), "HOGb": (10.67, 5.1), "DSIFT": (10.89, 7.5),
}
