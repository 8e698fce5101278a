// Scenario tests with socket.io-client (npm) against a real chatd:
//   node --test socketio_client.test.mjs   (CHATD=/path/to/chatd)
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  api, authed, connect, emitAck, expectNone, once, register, startChatd, waitFor,
} from "./lib.mjs";

const CHATD = process.env.CHATD;
if (!CHATD) throw new Error("set CHATD to the chatd binary");

const MODES = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"], upgrade: false },
  upgrade: { transports: ["polling", "websocket"] },
};

let srv, base;
const sockets = [];
const track = (s) => (sockets.push(s), s);

before(async () => {
  srv = await startChatd(CHATD);
  base = srv.url;
});

after(async () => {
  for (const s of sockets) s.disconnect();
  const code = await srv.stop();
  assert.equal(code, 0, "chatd exits 0 on SIGTERM");
});

for (const [mode, opts] of Object.entries(MODES)) {
  describe(`transport ${mode}`, () => {
    let alice, bob, carol, dm;

    before(async () => {
      alice = await register(base, "alice");
      bob = await register(base, "bob");
      carol = await register(base, "carol");
      const r = await api(base, "POST", "/api/chats/conversations/dm", { user_id: bob.id }, alice.token);
      assert.equal(r.status, 201);
      dm = r.body.id;
    });

    test("auth by CONNECT payload and by the authenticate event", async () => {
      const a = track(await authed(base, alice, opts));
      const b = track(connect(base, opts));
      await once(b, "connect");
      const ack = await emitAck(b, "authenticate", { token: bob.token });
      assert.equal(ack.userId, bob.id);
      assert.equal((await waitFor(b, "authenticated")).userId, bob.id);
      if (mode === "upgrade") {
        await new Promise((r) => setTimeout(r, 300));
        assert.equal(a.io.engine.transport.name, "websocket", "upgraded");
      }
      a.disconnect();
      b.disconnect();
    });

    test("a bad token gets unauthorized and a disconnect", async () => {
      const s = track(connect(base, { ...opts, auth: { token: "not.a.jwt" } }));
      const reason = once(s, "disconnect");
      const u = await waitFor(s, "unauthorized");
      assert.match(u.message, /invalid token/);
      // over polling the DISCONNECT and the close arrive in one payload,
      // and socket.io-client acts on the close first
      assert.ok(["io server disconnect", "transport close"].includes(await reason));
    });

    test("DM delivery to every device of every member, none to others", async () => {
      const a1 = track(await authed(base, alice, opts));
      const a2 = track(await authed(base, alice, { ...opts, nsp: "/ws" }));
      const b1 = track(await authed(base, bob, opts));
      const c1 = track(await authed(base, carol, opts));
      const ack = await emitAck(a1, "message:send", {
        conversation_id: dm, content: `hello over ${mode}`, client_msg_id: `m-${mode}`,
      });
      assert.ok(ack.message_id && ack.seq >= 1 && ack.created_at, JSON.stringify(ack));
      for (const s of [a1, a2, b1]) {
        const m = await waitFor(s, "message:new", (m) => m.message_id === ack.message_id);
        assert.equal(m.conversation_id, dm);
        assert.equal(m.sender_id, alice.id);
        assert.equal(m.preview, `hello over ${mode}`);
        assert.equal(m.seq, ack.seq);
        assert.equal(m.has_more, false);
      }
      // a retry with the same client_msg_id is the same message, told once
      const again = await emitAck(a1, "message:send", {
        conversation_id: dm, content: `hello over ${mode}`, client_msg_id: `m-${mode}`,
      });
      assert.equal(again.message_id, ack.message_id);
      assert.equal(again.duplicate, true);
      // REST sends reach sockets too
      const r = await api(base, "POST", `/api/messages/conversations/${dm}/messages`,
        { content: "from REST" }, bob.token);
      assert.equal(r.status, 201);
      await waitFor(a2, "message:new", (m) => m.message_id === r.body.message_id);
      await expectNone(c1, "message:new");
      await expectNone(b1, "message:new", (m) => m.message_id === ack.message_id);
      for (const s of [a1, a2, b1, c1]) s.disconnect();
    });
  });
}

describe("chat events (websocket)", () => {
  let alice, bob, carol, dave, group;

  before(async () => {
    [alice, bob, carol, dave] = await Promise.all(
      ["alice", "bob", "carol", "dave"].map((n) => register(base, n)));
  });

  test("group: created, removal stops delivery, invitation starts it", async () => {
    const a = track(await authed(base, alice));
    const b = track(await authed(base, bob));
    const c = track(await authed(base, carol));
    const d = track(await authed(base, dave));
    const r = await api(base, "POST", "/api/chats/conversations/group",
      { title: "ops", member_ids: [bob.id, carol.id] }, alice.token);
    assert.equal(r.status, 201);
    group = r.body.id;
    for (const s of [a, b, c]) {
      const u = await waitFor(s, "conversation:updated", (u) => u.conversation_id === group);
      assert.equal(u.action, "created");
    }
    let ack = await emitAck(a, "message:send", { conversation_id: group, content: "one" });
    for (const s of [a, b, c]) await waitFor(s, "message:new", (m) => m.message_id === ack.message_id);

    assert.equal((await api(base, "DELETE", `/api/chats/conversations/${group}/members/${carol.id}`,
      undefined, alice.token)).status, 204);
    const rm = await waitFor(c, "conversation:updated", (u) => u.action === "member_removed");
    assert.equal(rm.user_id, carol.id);
    ack = await emitAck(b, "message:send", { conversation_id: group, content: "two" });
    await waitFor(a, "message:new", (m) => m.message_id === ack.message_id);
    await expectNone(c, "message:new", (m) => m.message_id === ack.message_id);
    // carol may not send there any more either
    const denied = await emitAck(c, "message:send", { conversation_id: group, content: "x" });
    assert.equal(denied.error.code, "forbidden");

    assert.equal((await api(base, "POST", `/api/chats/conversations/${group}/invite`,
      { user_id: dave.id }, alice.token)).status, 201);
    const inv = await waitFor(d, "conversation:updated", (u) => u.action === "member_added");
    assert.equal(inv.user_id, dave.id);
    ack = await emitAck(a, "message:send", { conversation_id: group, content: "three" });
    await waitFor(d, "message:new", (m) => m.message_id === ack.message_id);
    await expectNone(c, "message:new", (m) => m.message_id === ack.message_id);
  });

  test("read markers reach the other members", async () => {
    const a = track(await authed(base, alice));
    const b = track(await authed(base, bob));
    const ack = await emitAck(b, "read", { conversation_id: group, seq: 2 });
    assert.equal(ack.seq, 2);
    const u = await waitFor(a, "read:updated", (u) => u.user_id === bob.id);
    assert.deepEqual(u, { conversation_id: group, user_id: bob.id, seq: 2 });
  });

  test("typing is told to the others and expires by itself", async () => {
    const a = track(await authed(base, alice));
    const b = track(await authed(base, bob));
    await emitAck(a, "typing", { conversation_id: group, is_typing: true });
    const t = await waitFor(b, "typing", (t) => t.is_typing);
    assert.deepEqual(t, { conversation_id: group, user_id: alice.id, is_typing: true });
    await expectNone(a, "typing");
    const t2 = await waitFor(b, "typing", (t) => !t.is_typing, 8000);
    assert.equal(t2.user_id, alice.id);
  });

  test("presence: online and offline to users who share a conversation", async () => {
    const erin = await register(base, "erin");
    assert.equal((await api(base, "POST", "/api/chats/conversations/dm",
      { user_id: alice.id }, erin.token)).status, 201);
    const a = track(await authed(base, alice));
    const e = track(await authed(base, erin));
    const on = await waitFor(a, "presence", (p) => p.user_id === erin.id && p.online);
    assert.ok(on.last_seen);
    e.disconnect();
    await waitFor(a, "presence", (p) => p.user_id === erin.id && !p.online);
  });

  test("errors are acks, not crashes", async () => {
    const a = track(await authed(base, alice));
    const foreign = (await api(base, "POST", "/api/chats/conversations/dm",
      { user_id: carol.id }, bob.token)).body.id;
    let r = await emitAck(a, "message:send", { conversation_id: foreign, content: "peek" });
    assert.equal(r.error.code, "forbidden");
    r = await emitAck(a, "message:send", { conversation_id: "nope", content: "x" });
    assert.equal(r.error.code, "validation_failed");
    r = await emitAck(a, "message:send", { conversation_id: group, content: 42 });
    assert.equal(r.error.code, "validation_failed");
    r = await emitAck(a, "message:send", { conversation_id: group, content: "" });
    assert.equal(r.error.code, "validation_failed");
    r = await emitAck(a, "read", { conversation_id: group, seq: -1 });
    assert.equal(r.error.code, "validation_failed");
    r = await emitAck(a, "typing", { conversation_id: foreign, is_typing: true });
    assert.equal(r.error.code, "forbidden");
    r = await emitAck(a, "no:such:event", {});
    assert.equal(r.error.code, "unknown_event");
    r = await emitAck(a, "message:send", "not an object");
    assert.equal(r.error.code, "validation_failed");
    // still serving
    r = await emitAck(a, "message:send", { conversation_id: group, content: "still here" });
    assert.ok(r.message_id);
  });

  test("nothing before authenticating", async () => {
    const s = track(connect(base));
    await once(s, "connect");
    const r = await emitAck(s, "message:send", { conversation_id: group, content: "x" });
    assert.equal(r.error.code, "unauthorized");
    await emitAck(alice && (await authed(base, alice)), "message:send",
      { conversation_id: group, content: "not for strangers" });
    await expectNone(s, "message:new");
    s.disconnect();
  });

  test("other namespaces are refused", async () => {
    const s = track(connect(base, { nsp: "/admin" }));
    const err = await once(s, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  });

  test("reconnect: the client comes back and receives again", async () => {
    const a = track(connect(base, { auth: { token: alice.token }, reconnection: true }));
    await waitFor(a, "authenticated");
    a.io.engine.close(); // the transport drops; socket.io-client reconnects
    await waitFor(a, "authenticated", () => true, 5000);
    const ack = await emitAck(track(await authed(base, bob)), "message:send",
      { conversation_id: group, content: "after reconnect" });
    await waitFor(a, "message:new", (m) => m.message_id === ack.message_id);
  });
});

describe("limits (a chatd with small ones)", () => {
  let small, sbase, user;

  before(async () => {
    small = await startChatd(CHATD, ["--auth-timeout", "400", "--rate-events", "5/s",
      "--max-conn-user", "2", "--rate-send", "1/m"]);
    sbase = small.url;
    user = await register(sbase, "lim");
  });
  after(async () => { assert.equal(await small.stop(), 0); });

  test("a socket that does not authenticate is disconnected", async () => {
    const s = track(connect(sbase));
    const reason = once(s, "disconnect", 3000);
    const u = await waitFor(s, "unauthorized", () => true, 3000);
    assert.equal(u.message, "authentication timeout");
    assert.equal(await reason, "io server disconnect");
  });

  test("too many events per second: an error event, then disconnect", async () => {
    const s = track(await authed(sbase, user));
    const reason = once(s, "disconnect", 3000);
    for (let i = 0; i < 30; i++) s.emit("typing", { conversation_id: "x", is_typing: true });
    const e = await waitFor(s, "error", () => true, 3000);
    assert.match(e.message, /rate limit/);
    assert.equal(await reason, "io server disconnect");
  });

  test("sends per user are rate limited, over sockets too", async () => {
    const s = track(await authed(sbase, user));
    const conv = "01900000-0000-7000-8000-000000000000";
    let r = await emitAck(s, "message:send", { conversation_id: conv, content: "a" });
    assert.equal(r.error.code, "forbidden"); // took the one token
    r = await emitAck(s, "message:send", { conversation_id: conv, content: "b" });
    assert.equal(r.error.code, "rate_limited");
    s.disconnect();
  });

  test("connections per user are capped", async () => {
    const a = track(await authed(sbase, user));
    const b = track(await authed(sbase, user));
    const c = track(connect(sbase, { auth: { token: user.token } }));
    const e = await waitFor(c, "error", () => true, 3000);
    assert.match(e.message, /too many connections/);
    a.disconnect();
    b.disconnect();
  });
});
