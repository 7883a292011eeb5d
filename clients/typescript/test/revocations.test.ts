/**
 * The revocation follower against the real service: a mandate revoked there is refused here
 * once the feed (stream or poll) delivers it, and a copy that has not synced for 30 s fails
 * closed.
 */

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, describe, it } from "node:test";

import { RevocationFollower, Verifier } from "../src/index.js";
import { Service, freePort } from "./support.js";

const read = { tool: "crm", operation: "read" };

async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

describe("revocation follower", () => {
  let service: Service;
  before(async () => {
    service = await Service.start();
  });
  after(async () => service?.stop());

  it("refuses a mandate revoked at the service, delivered by the stream", async () => {
    const follower = new RevocationFollower({ baseUrl: service.baseUrl, pollIntervalMs: 60_000 });
    const verifier = new Verifier({ baseUrl: service.baseUrl, revocations: follower });
    await assert.rejects(verifier.verify("x", read), { code: "revocations_stale" }, "no sync yet: fail closed");
    follower.start();
    try {
      assert.ok(await eventually(async () => !follower.status().stale, 5_000), "the follower syncs");
      const minted = await service.mint([{ tool: "crm", operations: ["read"] }]);
      assert.equal((await verifier.verify(minted.token, read)).mandate_id, minted.mandate_id);
      await service.revoke(minted.mandate_id);
      // Polling is an hour away: only the stream can deliver it this soon.
      const refused = await eventually(async () => {
        try {
          await verifier.verify(minted.token, read);
          return false;
        } catch (error) {
          return (error as { code?: string }).code === "revoked";
        }
      }, 5_000);
      assert.ok(refused, "the revoked mandate is refused");
      assert.ok(follower.isRevoked(minted.revocation_id));
    } finally {
      await follower.stop();
    }
  });

  it("catches up by polling and fails closed 30 s after its last sync", async () => {
    const minted = await service.mint([{ tool: "crm", operations: ["read"] }]);
    await service.revoke(minted.mandate_id);
    let monotonic = 0;
    const clock = { now: () => Date.now(), monotonic: () => monotonic };
    const follower = new RevocationFollower({ baseUrl: service.baseUrl, clock });
    assert.ok((await follower.syncOnce()) >= 1);
    assert.ok(follower.isRevoked(minted.revocation_id));
    const verifier = new Verifier({ baseUrl: service.baseUrl, revocations: follower });
    await assert.rejects(verifier.verify(minted.token, read), { code: "revoked" });
    const other = await service.mint([{ tool: "crm", operations: ["read"] }]);
    monotonic += 30_000;
    assert.equal((await verifier.verify(other.token, read)).mandate_id, other.mandate_id, "30 s: still current");
    monotonic += 1_000;
    await assert.rejects(verifier.verify(other.token, read), { code: "revocations_stale" });
    await follower.syncOnce();
    assert.equal((await verifier.verify(other.token, read)).mandate_id, other.mandate_id, "a sync makes it current again");
  });
});

describe("revocation follower, reading the feed", () => {
  const E = Date.parse("2026-06-01T12:05:00Z");
  const entry = (seq: number) => ({ seq, revocation_id: `${"ab".repeat(31)}${seq.toString(16).padStart(2, "0")}`, expires_at: "2026-06-01T12:05:00Z" });
  const feed = [entry(1), entry(2), entry(3)];
  let server: Server;
  let baseUrl: string;
  /** What the next `GET /v1/revocations` answers (by default the entries after the cursor). */
  let page: ((after: number) => unknown) | undefined;
  /** The raw event stream the next `GET /v1/revocations/stream` sends, in one write, before it ends. */
  let stream = "";
  const asked: string[] = [];
  before(async () => {
    server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://feed");
      asked.push(`${url.pathname}?${url.searchParams}`);
      const after = Number(url.searchParams.get("after") ?? 0);
      if (url.pathname === "/v1/revocations") {
        const items = feed.filter((e) => e.seq > after);
        const body = page?.(after) ?? { items, next_after: items.at(-1)?.seq ?? after, kept_past_expiry_seconds: 31 };
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
      } else {
        res.writeHead(200, { "content-type": "text/event-stream" });
        res.end(stream);
      }
    });
    const port = await freePort();
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    baseUrl = `http://127.0.0.1:${port}`;
  });
  after(async () => new Promise((r) => server?.close(r)));

  const clockAt = (ms: () => number) => ({ now: ms, monotonic: () => 0 });

  it("keeps an entry as long as a verifier still accepts its token: expiry plus 31 s", async () => {
    let now = E;
    const follower = new RevocationFollower({ baseUrl, clock: clockAt(() => now) });
    page = undefined;
    assert.equal(await follower.syncOnce(), 3);
    // At E + 30.5 s a verifier's time is floor(E + 30.5 s) - 30 s = E: not expired yet.
    now = E + 30_500;
    assert.ok(follower.isRevoked(entry(1).revocation_id), "revoked while the token is still accepted");
    now = E + 31_000;
    assert.ok(!follower.isRevoked(entry(1).revocation_id), "dropped once the token is expired");
  });

  it("fails a sync on a page it cannot read, and applies none of it", async () => {
    const follower = new RevocationFollower({ baseUrl, clock: clockAt(() => E) });
    const unreadable: Array<[string, unknown]> = [
      ["no items", { next_after: 3 }],
      ["no next_after", { items: feed }],
      ["items that are not a list", { items: {}, next_after: 0 }],
      ["an entry whose id is not hex", { items: [entry(1), { ...entry(2), revocation_id: "zz" }], next_after: 2 }],
      ["an entry without expiry", { items: [{ seq: 1, revocation_id: "ab" }], next_after: 1 }],
      ["an entry whose expiry is not a time", { items: [{ ...entry(1), expires_at: "soon" }], next_after: 1 }],
      ["an entry whose seq is not an integer", { items: [{ ...entry(1), seq: "1" }], next_after: 1 }],
    ];
    for (const [what, body] of unreadable) {
      page = () => body;
      await assert.rejects(follower.syncOnce(), /revocation feed sent/, what);
      assert.ok(follower.stale() !== undefined, `${what}: not a sync`);
      assert.deepEqual(follower.status(), { cursor: 0, entries: 0, stale: true }, `${what}: nothing applied`);
    }
    page = undefined;
    assert.equal(await follower.syncOnce(), 3);
    assert.equal(follower.stale(), undefined);
  });

  it("drops the stream on an unreadable event and polls again from the last entry read", async () => {
    const follower = new RevocationFollower({ baseUrl, clock: clockAt(() => E), pollIntervalMs: 10 });
    const event = (e: unknown) => `id: 1\nevent: revocation\ndata: ${JSON.stringify(e)}\n\n`;
    stream = `:\n\n${event(entry(1))}event: revocation\ndata: {"seq": 2, "revocation_id": \n\n${event(entry(3))}`;
    await assert.rejects(follower.follow(), /an event that is not JSON/);
    assert.equal(follower.status().cursor, 1, "the entry after the lost one does not move the cursor");
    assert.ok(follower.isRevoked(entry(1).revocation_id));
    assert.ok(!follower.isRevoked(entry(3).revocation_id));
    assert.ok(follower.stale() !== undefined, "a chunk with an unreadable event is not a sync");

    stream = event({ ...entry(4), revocation_id: "not hex" });
    await assert.rejects(follower.follow(), /an event with an entry that is not one/);

    // Following in the background: the poll from the last entry read (seq 1) reads the lost one.
    stream = `${event(entry(2)).replace('"seq":2', '"seq":"2"')}`;
    page = undefined;
    asked.length = 0;
    follower.start();
    try {
      const deadline = Date.now() + 5_000;
      while (!follower.isRevoked(entry(3).revocation_id) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    } finally {
      await follower.stop();
    }
    assert.equal(asked[0], "/v1/revocations?after=1&limit=1000");
    assert.ok(follower.isRevoked(entry(2).revocation_id) && follower.isRevoked(entry(3).revocation_id), "the lost entry is read by polling");
    assert.equal(follower.status().cursor, 3);
  });
});
