"""The lowest layer: the plumbing every command shares. It imports nothing else of vwwtorch.

    errors           UserError (exit 2), GateFailed (exit 1), Stopped (130/143)
    stopping         SIGTERM and Ctrl-C as exceptions where the program is
    outputs          files and folders that are never half-written; records: the JSON a stage leaves
    cache, download  where downloads are kept; one pinned, sha256-checked file
    hashing, names   sha256 of files and bytes; file names as printable text
    text_files       small text files a user hands a command (labels.txt)
    progress         progress bars, where a stop signal lands
    console          library chatter kept off stderr; native_output: what native code prints
    isolation        native runtimes in a child process; children: child programs that end with us
    defaults         each option's default read from where the work is defined
"""
