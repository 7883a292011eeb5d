/**
 * Human approvals in the authority block (mandate's `src/token/approval.rs`): read, shown in the
 * read-out, enforced through the `arguments_sha256` fact the verifier states, and refused when
 * malformed; and RFC 8785 canonical JSON. The tokens are built here with biscuit-wasm under a
 * fresh root key.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { describe, it } from "node:test";

import { VerificationError, Verifier, argumentsSha256, canonicalJson, parseJson, type Approval } from "../src/index.js";
import { wasm } from "../src/token/biscuit.js";
import { checkToken, type Checked } from "../src/token/verify.js";

const root = new wasm.KeyPair(wasm.SignatureAlgorithm.Ed25519);
const rootHex = root.getPublicKey().toString().replace(/^ed25519\//, "");
const KID = 7;
const NOW = 1_780_000_000;
const AT = "2026-03-01T10:02:00Z";
const ARGUMENTS = { ticket: "T-17", amount: 250 };
const APPROVED = argumentsSha256(ARGUMENTS);
const ARGUMENTS_CHECK = "check if tool($tool), operation($operation), !($tool == {tool} && $operation == {operation}) "
  + "or arguments_sha256({sha256});";
const MANDATE = 'mandate_schema(1); mandate("m-1"); principal("alice", "https://idp.example.com/"); '
  + 'agent("support-orchestrator"); task("task-1", hex:3f3f); expires({expires}); '
  + 'right("crm", "read"); right("crm", "write"); right("mail", "send"); '
  + "check if time($time), $time <= {expires};";

/** A mandate for alice with `approvals` (Datalog with `params`) in its authority block. */
function mint(approvals = "", params: Record<string, unknown> = {}): string {
  const builder = wasm.Biscuit.builder();
  builder.addCodeWithParameters(`${MANDATE} ${approvals}`,
    { expires: { date: new Date((NOW + 600) * 1000).toISOString() }, at: { date: AT }, ...params }, {});
  builder.setRootKeyId(KID);
  return builder.build(root.getPrivateKey()).toBase64();
}

/** One approval of `operation` of `tool` bound to the arguments of digest `sha256`. */
function bound(tool = "crm", operation = "write", sha256 = APPROVED): string {
  return mint('approval("apr-1", {tool}, {operation}, {at}); approved_by("apr-1", {tool}, {operation}, "bob", "https://idp.example.com/"); '
    + `approval_arguments("apr-1", {tool}, {operation}, {sha256}); ${ARGUMENTS_CHECK}`, { tool, operation, sha256 });
}

function append(token: string, source: string): string {
  const parsed = wasm.Biscuit.fromBase64WithProvider(token, () => root.getPublicKey());
  const block = wasm.Biscuit.block_builder();
  block.addCodeWithParameters(source, {}, {});
  return parsed.appendBlock(block).toBase64();
}

const check = (token: string): Checked => checkToken(token, { keys: new Map([[KID, rootHex]]), agentKeys: new Map() });

function call(checked: Checked, operation = "write", args: unknown = undefined): void {
  checked.authorizeHeld(() => false, { tool: "crm", operation, resource: undefined, arguments: args, now: NOW }, undefined,
    { maxBytes: 16 * 1024, maxBlocks: 16, skewSeconds: 30, limits: { maxFacts: 1000, maxIterations: 100, maxTimeMs: 1000 } });
}

function refusal(token: string, operation = "write", args: unknown = undefined): string {
  try {
    call(check(token), operation, args);
  } catch (error) {
    if (error instanceof VerificationError) return error.code;
    throw error;
  }
  return "allowed";
}

describe("approvals", () => {
  it("are read with their approvers sorted and deduplicated, and shown in the read-out", () => {
    const token = mint('approval("apr-2", "mail", "send", {at}); approved_by("apr-2", "mail", "send", "dora", "https://idp.example.com/"); '
      + 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "carol", "https://idp.example.com/"); '
      + 'approved_by("apr-1", "crm", "write", "bob", "https://other.example.com/"); '
      + 'approved_by("apr-1", "crm", "write", "bob", "https://idp.example.com/");');
    const expected: Approval[] = [
      {
        id: "apr-1", tool: "crm", operation: "write", approved_at: AT,
        approvers: [
          { subject: "bob", issuer: "https://idp.example.com/" },
          { subject: "bob", issuer: "https://other.example.com/" },
          { subject: "carol", issuer: "https://idp.example.com/" },
        ],
      },
      { id: "apr-2", tool: "mail", operation: "send", approved_at: AT, approvers: [{ subject: "dora", issuer: "https://idp.example.com/" }] },
    ];
    assert.deepEqual(check(token).readOut.approvals, expected);
  });

  it("of one request gating two operations list each only its own approvers", () => {
    const token = mint('approval("apr-1", "crm", "write", {at}); approval("apr-1", "mail", "send", {at}); '
      + 'approved_by("apr-1", "mail", "send", "dora", "https://idp.example.com/"); '
      + 'approved_by("apr-1", "crm", "write", "carol", "https://idp.example.com/"); '
      + 'approved_by("apr-1", "crm", "write", "bob", "https://idp.example.com/");');
    const expected: Approval[] = [
      {
        id: "apr-1", tool: "crm", operation: "write", approved_at: AT,
        approvers: [{ subject: "bob", issuer: "https://idp.example.com/" }, { subject: "carol", issuer: "https://idp.example.com/" }],
      },
      { id: "apr-1", tool: "mail", operation: "send", approved_at: AT, approvers: [{ subject: "dora", issuer: "https://idp.example.com/" }] },
    ];
    assert.deepEqual(check(token).readOut.approvals, expected);
  });

  it("show the digest of the arguments an approval is bound to", () => {
    const [approval] = check(bound()).readOut.approvals ?? [];
    assert.equal(approval?.arguments_sha256, APPROVED);
  });

  it("are absent from the read-out of a mandate without any", () => {
    assert.ok(!("approvals" in check(mint()).readOut));
  });

  it("are in what the verifier answers", async () => {
    const keys = { keys: [{ kid: KID, algorithm: "ed25519", public_key: `ed25519/${rootHex}`, status: "active", created_at: "2026-01-01T00:00:00Z" }] };
    const verifier = Verifier.fromDocuments(keys, { agents: [] }, { clock: { now: () => NOW * 1000, monotonic: () => 0 } });
    const verified = await verifier.verify(bound(), { tool: "crm", operation: "write", arguments: parseJson('{"ticket":"T-17","amount":250}') });
    assert.deepEqual(verified.approvals, [{
      id: "apr-1", tool: "crm", operation: "write", approved_at: AT,
      approvers: [{ subject: "bob", issuer: "https://idp.example.com/" }], arguments_sha256: APPROVED,
    }]);
    await assert.rejects(verifier.verify(bound(), { tool: "crm", operation: "write", arguments: { ticket: "T-17" } }),
      { code: "arguments_not_approved", message: "the call's arguments are not the ones approved for `crm` `write`" });
  });

  const malformed: Array<[string, string]> = [
    ["an approval nobody approved", 'approval("apr-1", "crm", "write", {at});'],
    ["an approver of no approval", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approved_by("apr-2", "crm", "write", "eve", "i");'],
    ["an approver of another operation of the same approval", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approved_by("apr-1", "crm", "read", "eve", "i");'],
    ["an approver of another tool of the same approval", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approved_by("apr-1", "mail", "write", "eve", "i");'],
    ["an approver in the former three-term form", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "bob", "i");'],
    ["a digest of another operation", `approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approval_arguments("apr-1", "crm", "read", "${APPROVED}");`],
    ["two digests for one approval", `approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approval_arguments("apr-1", "crm", "write", "${APPROVED}"); approval_arguments("apr-1", "crm", "write", "${"0".repeat(64)}");`],
    ["a digest in uppercase hex", `approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approval_arguments("apr-1", "crm", "write", "${APPROVED.toUpperCase()}");`],
    ["a digest too short", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approval_arguments("apr-1", "crm", "write", "abc");'],
    ["two approvals of one operation", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); approval("apr-2", "crm", "write", {at}); approved_by("apr-2", "crm", "write", "bob", "i");'],
    ["an approval time that is no date", 'approval("apr-1", "crm", "write", "yesterday"); approved_by("apr-1", "crm", "write", "bob", "i");'],
    ["an approver that is no string", 'approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", 3);'],
  ];
  for (const [name, approvals] of malformed) {
    it(`are malformed with ${name}`, () => {
      assert.throws(() => check(mint(approvals)), { code: "malformed" });
    });
  }

  it("may not be stated by a later block", () => {
    for (const fact of ['approval("apr-1", "crm", "write", 2026-03-01T10:02:00Z)', 'approved_by("apr-1", "crm", "write", "bob", "i")',
      `approval_arguments("apr-1", "crm", "write", "${APPROVED}")`]) {
      assert.throws(() => check(append(mint(), fact)), { code: "not_mandate_block" }, fact);
    }
  });
});

describe("an approval bound to arguments", () => {
  it("allows the call with the approved arguments, whatever their member order", () => {
    const checked = check(bound());
    call(checked, "write", { amount: 250, ticket: "T-17" });
    call(checked, "read"); // the approval gates `write` only
  });

  it("refuses a call with other arguments, or none, as not approved", () => {
    const token = bound();
    assert.equal(refusal(token, "write", { ticket: "T-18", amount: 250 }), "arguments_not_approved");
    assert.equal(refusal(token, "write", parseJson('{"ticket":"T-17","amount":250.5}')), "arguments_not_approved");
    assert.equal(refusal(token, "write", undefined), "arguments_not_approved");
    assert.equal(refusal(token, "write", null), "arguments_not_approved");
    assert.equal(refusal(token, "write", { ticket: "T-17", amount: Number.NaN }), "arguments_not_approved");
    assert.equal(refusal(token, "write", {}), "arguments_not_approved");
  });

  it("does not explain the refusal of a right not granted", () => {
    assert.equal(refusal(bound("crm", "delete"), "delete", ARGUMENTS), "not_authorized");
  });

  it("explains a refusal before the argument constraints do", () => {
    const constrained = 'constraint("crm", "write", "ticket", "prefix", "T-"); '
      + 'check if tool($tool), operation($operation), !($tool == "crm" && $operation == "write") '
      + 'or arg("ticket", $value), $value.starts_with("T-");';
    const token = mint('approval("apr-1", "crm", "write", {at}); approved_by("apr-1", "crm", "write", "bob", "i"); '
      + `approval_arguments("apr-1", "crm", "write", {sha256}); ${ARGUMENTS_CHECK} ${constrained}`,
    { tool: "crm", operation: "write", sha256: argumentsSha256({ ticket: "X-1" }) });
    assert.equal(refusal(token, "write", { ticket: "Y-1" }), "arguments_not_approved", "other arguments the constraint refuses too");
    assert.equal(refusal(token, "write", { ticket: "X-1" }), "argument_not_allowed", "the approved arguments, which the constraint refuses");
  });

  it("is kept by a narrowed token", () => {
    const narrowed = append(bound(), 'delegate("helper")');
    assert.deepEqual(check(narrowed).readOut.approvals, check(bound()).readOut.approvals);
    call(check(narrowed), "write", ARGUMENTS);
    assert.equal(refusal(narrowed, "write", {}), "arguments_not_approved");
  });
});

describe("canonical JSON", () => {
  it("is RFC 8785's example", () => {
    const parsed = parseJson('{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],'
      + '"string":"\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/","literals":[null,true,false]}');
    assert.equal(canonicalJson(parsed),
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
    assert.equal(canonicalJson(JSON.parse(JSON.stringify(parsed)) as unknown), canonicalJson(parsed));
  });

  it("sorts members by their UTF-16 code units", () => {
    assert.equal(canonicalJson({ "\u20ac": 1, "\r": 2, "\u{1f600}": 3, "\u00f6": 4, "1": 5 }), '{"\\r":2,"1":5,"ö":4,"€":1,"😀":3}');
  });

  it("refuses what has no JSON form", () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, "\ud800", 1n, new Date(0), new Map(), () => 1]) {
      assert.throws(() => canonicalJson(value), { name: "CanonicalJsonError" }, String(value));
    }
    assert.equal(canonicalJson({ a: undefined, b: -0 }), '{"b":0}');
  });

  it("hashes no arguments as the SHA-256 of an empty object", () => {
    assert.equal(argumentsSha256({}), "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    assert.equal(argumentsSha256({}), createHash("sha256").update("{}").digest("hex"));
  });
});
