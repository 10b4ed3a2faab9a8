// Publish events to `rxbus serve` over Socket.IO with the official client and print the acks.
//
//   node publish.js URL TOPIC COUNT [TOKEN]
//
// Sends COUNT events (with ids made here) as one batch, then the same batch again, and prints
// {"acks": [first, second], "ids": [...]}: the second ack must count every event a duplicate.
"use strict";
const { io } = require("socket.io-client");
const crypto = require("crypto");

const [url, topic, countText, token] = process.argv.slice(2);
const count = Number(countText);
const fail = (message) => {
  process.stderr.write(message + "\n");
  process.exit(1);
};
setTimeout(() => fail("timed out after 60 s"), 60000).unref();

const events = [];
for (let n = 0; n < count; n++) {
  events.push({ id: "js-" + crypto.randomUUID(), topic, type: "FromNode", source: "node", data: { n } });
}
const socket = io(url, { auth: token ? { token } : {}, reconnection: false });
socket.on("connect_error", (err) => fail("connect_error: " + err.message));
socket.on("connect", async () => {
  const first = await socket.timeout(10000).emitWithAck("publish", events);
  const second = await socket.timeout(10000).emitWithAck("publish", events);
  process.stdout.write(JSON.stringify({ acks: [first, second], ids: events.map((e) => e.id) }) + "\n");
  socket.disconnect();
  process.exit(0);
});
