"""AFTER, in Python: the hook as a Python script, on the same path as ``rxbus publish``.

    echo '{"tool": "Bash"}' | python hook.py PreToolUse

``rxbus.cli.main`` runs the ``publish`` command in this process: HTTP to ``rxbus serve``, the
local spool when it does not answer, the event's id kept throughout. Use it from a hook that is
already Python; a long-running program publishes through a bus instead (see ``agent.py``).
"""

import sys

from rxbus.cli import main

if __name__ == "__main__":
    event_type = sys.argv[1] if len(sys.argv) > 1 else "PreToolUse"
    sys.exit(main(["publish", "hook.tool", "--type", event_type, "--source", "claude"]))
