/**
 * The revocation follower against the real service: a mandate revoked there is refused here
 * once the feed (stream or poll) delivers it, and a copy that has not synced for 30 s fails
 * closed.
 */

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { RevocationFollower, Verifier } from "../src/index.js";
import { Service } from "./support.js";

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
