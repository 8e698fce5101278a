// The Node.js baseline for bench_realtime.sh: a minimal socket.io 4.x
// server that does what the chat gateway does for a group, minus storage:
// every socket joins one room; message:send is broadcast to the room as
// message:new and acked.
//   NODE_MODULES_DIR=<dir with socket.io> node node-fanout-server.mjs PORT
import { createRequire } from "node:module";
import { randomUUID } from "node:crypto";

const require = createRequire(process.env.NODE_MODULES_DIR + "/index.js");
const { Server } = require("socket.io");
const io = new Server(Number(process.argv[2]), { transports: ["websocket"], serveClient: false });
let seq = 0;
io.on("connection", (socket) => {
  const uid = String(socket.handshake.auth.token);
  socket.join("g");
  socket.emit("authenticated", { userId: uid });
  socket.on("message:send", (m, ack) => {
    const msg = {
      message_id: randomUUID(), conversation_id: m.conversation_id, seq: ++seq,
      sender_id: uid, created_at: new Date().toISOString(),
      preview: String(m.content).slice(0, 200), has_more: false,
    };
    io.to("g").emit("message:new", msg);
    if (typeof ack === "function") ack({ message_id: msg.message_id, seq: msg.seq, created_at: msg.created_at });
  });
});
console.log("listening");
