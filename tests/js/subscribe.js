// Subscribe to `rxbus serve` with the official socket.io-client and print what arrives.
//
//   node subscribe.js URL PATTERN END_TOPIC [TOKEN]
//
// Prints one JSON line per message on stdout: {"ready": true, "missed": n} once subscribed, then
// {"event": {...}} per event received, and exits 0 after the event whose topic is END_TOPIC.
// Exits 1 with a line on stderr on a connection error, a refused subscribe or after 60 s.
"use strict";
const { io } = require("socket.io-client");

const [url, pattern, endTopic, token] = process.argv.slice(2);
if (!url || !pattern || !endTopic) {
  console.error("usage: node subscribe.js URL PATTERN END_TOPIC [TOKEN]");
  process.exit(2);
}
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const fail = (message) => {
  process.stderr.write(message + "\n");
  process.exit(1);
};
setTimeout(() => fail("timed out after 60 s"), 60000).unref();

const socket = io(url, { auth: token ? { token } : {}, reconnection: false });
socket.on("connect_error", (err) => fail("connect_error: " + err.message));
socket.on("connect", () => {
  socket.emit("subscribe", { pattern, last_id: null }, (ack) => {
    if (!ack || !ack.ok) fail("subscribe refused: " + JSON.stringify(ack));
    print({ ready: true, missed: ack.missed.length });
  });
});
socket.on("event", (event) => {
  print({ event });
  if (event.topic === endTopic) {
    socket.disconnect();
    process.exit(0);
  }
});
