"""What a report computes when not told otherwise (light: the command line reads it for --help)."""

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)   # score thresholds of the table
FPR_TARGETS = (0.01, 0.05, 0.1)                               # false-positive rates to find thresholds for
MAX_ERRORS = 32                                               # misclassified images shown
SPLIT = "val"
BATCH_SIZE = 64
