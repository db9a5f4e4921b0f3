"""What every stage of vwwtorch agrees on, written once: the lowest layer, importing nothing of ours.

    errors       UserError (exit 2) and GateFailed (exit 1)
    outputs      files and folders that are never half-written
"""
