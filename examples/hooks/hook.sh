#!/bin/sh
# AFTER: the same hook with rxbus publish. The hook's JSON arrives on stdin; $1 is the event type.
#
#   echo '{"tool": "Bash"}' | ./hook.sh PreToolUse
#
# Server up: the event is stored before this returns. Server down or not answering: the event
# is spooled (with its id) and this returns at once; the next publish, or rxbus serve at start,
# delivers it, and the server drops any repeat by id. Set RXBUS_URL / RXBUS_SPOOL to point it
# elsewhere. Exit code 0 unless the input itself is bad (then one line on stderr, exit 2).
exec rxbus publish hook.tool --type "${1:-PreToolUse}" --source claude
