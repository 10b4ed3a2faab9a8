"""BEFORE: the hook as the seed wrote it. Kept to show what rxbus fixes; do not use it.

One Socket.IO client per event: connect (handshake), emit, disconnect. When the server is down
the connect raises and the event is gone; when it is slow the hook waits for it; and because the
event has no id, a second path emitting the same thing (a log shipper, a retry) makes a
duplicate nobody can tell apart.

    echo '{"tool": "Bash"}' | python seed_hook.py PreToolUse
"""

import json
import os
import sys

import socketio


def main() -> int:
    payload = json.load(sys.stdin)
    sio = socketio.Client(reconnection=False)
    sio.connect(os.environ.get("RXBUS_URL", "http://127.0.0.1:8765"), wait_timeout=5)
    sio.call("publish", {"topic": "hook.tool", "type": sys.argv[1], "data": payload}, timeout=5)
    sio.disconnect()
    return 0


if __name__ == "__main__":
    sys.exit(main())
