/**
 * Human approvals carried in a mandate (mandate's `src/token/approval.rs`). A right a policy
 * gates behind approval is minted only once the approvers have approved, and the authority block
 * then says so, for any verifier to show offline:
 *
 * ```text
 * approval($approval_id, $tool, $operation, $approved_at);          // one per gated right
 * approved_by($approval_id, $tool, $operation, $subject, $issuer);  // one per approver of it
 * ```
 *
 * One approval request may gate several operations, each approved by different people: a gated
 * right's approvers are the `approved_by` facts with its id, tool and operation.
 *
 * An approval bound to the exact arguments of the call also states their digest (lowercase hex
 * SHA-256 of the arguments in RFC 8785 canonical JSON, `canonical.ts`) and checks it:
 *
 * ```text
 * approval_arguments($approval_id, $tool, $operation, $sha256);
 * check if tool($tool), operation($operation), !($tool == TOOL && $operation == OPERATION)
 *       or arguments_sha256(SHA256);
 * ```
 *
 * The verifier states `arguments_sha256($hex)` for the call it authorizes, computed from the
 * call's arguments, so a verifier that does not see them refuses the gated operation. Only the
 * authority block states these facts; a later block stating them is not a mandate/v1 block.
 */

import { compareText } from "../encoding.js";
import { Malformed } from "../errors.js";

/** Who approved: the approver's subject at the issuer that proved them. */
export interface Approver {
  subject: string;
  issuer: string;
}

/** One gated right's approval, as the mandate carries it and the read-out shows it. */
export interface Approval {
  /** The approval request's id. */
  id: string;
  /** The gated tool. */
  tool: string;
  /** The gated operation. */
  operation: string;
  /** When the approval was given (the last approver needed approved), RFC 3339 with `Z`. */
  approved_at: string;
  /** Who approved, sorted by subject, then issuer. */
  approvers: Approver[];
  /** For an approval bound to the exact arguments of one call: their SHA-256, hex, in RFC 8785 canonical JSON. */
  arguments_sha256?: string;
}

/** An approval as the authority block states it (`approvedAt` in seconds since the epoch). */
export interface AuthorityApproval {
  id: string;
  tool: string;
  operation: string;
  approvedAt: number;
  /** Sorted by subject, then issuer; no two alike. */
  approvers: Approver[];
  argumentsSha256: string | undefined;
}

/** Whether `text` is a SHA-256 in lowercase hex. */
export function isSha256Hex(text: string): boolean {
  return /^[0-9a-f]{64}$/.test(text);
}

/** The approval facts of an authority block, as read. */
export interface ApprovalFacts {
  /** `approval(id, tool, operation, at)`, `at` in seconds. */
  approvals: Array<{ id: string; tool: string; operation: string; at: number }>;
  /** `approved_by(id, tool, operation, subject, issuer)`. */
  approvers: Array<{ id: string; tool: string; operation: string; approver: Approver }>;
  /** `approval_arguments(id, tool, operation, sha256)`. */
  arguments: Array<{ id: string; tool: string; operation: string; sha256: string }>;
}

/**
 * Every gated right's approval, sorted by tool and operation: each `approval` with its approvers
 * (at least one, sorted and deduplicated) and at most one digest; anything else is malformed.
 */
export function finishApprovals(facts: ApprovalFacts): AuthorityApproval[] {
  const out: AuthorityApproval[] = [];
  for (const { id, tool, operation, at } of facts.approvals) {
    const approvers = facts.approvers
      .filter((a) => a.id === id && a.tool === tool && a.operation === operation)
      .map((a) => a.approver)
      .sort((a, b) => compareText(a.subject, b.subject) || compareText(a.issuer, b.issuer))
      .filter((a, i, all) => i === 0 || a.subject !== all[i - 1]?.subject || a.issuer !== all[i - 1]?.issuer);
    const digests = facts.arguments.filter((d) => d.id === id && d.tool === tool && d.operation === operation);
    if (approvers.length === 0 || digests.length > 1) {
      throw new Malformed("an approval names at least one approver and at most one digest");
    }
    const argumentsSha256 = digests[0]?.sha256;
    if (argumentsSha256 !== undefined && !isSha256Hex(argumentsSha256)) throw new Malformed();
    out.push({ id, tool, operation, approvedAt: at, approvers, argumentsSha256 });
  }
  out.sort((a, b) => compareText(a.tool, b.tool) || compareText(a.operation, b.operation));
  const gatedTwice = out.some((a, i) => i > 0 && a.tool === out[i - 1]?.tool && a.operation === out[i - 1]?.operation);
  // Every approver and digest belongs to an approval of its id, tool and operation.
  const gates = (o: AuthorityApproval, f: { id: string; tool: string; operation: string }) =>
    o.id === f.id && o.tool === f.tool && o.operation === f.operation;
  const orphan = facts.approvers.some((a) => !out.some((o) => gates(o, a)))
    || facts.arguments.some((d) => !out.some((o) => gates(o, d)));
  if (gatedTwice || orphan) throw new Malformed();
  return out;
}

/** An approval as the read-out shows it, its time written by `time`. */
export function approvalReadOut(approval: AuthorityApproval, time: (seconds: number) => string): Approval {
  const out: Approval = {
    id: approval.id,
    tool: approval.tool,
    operation: approval.operation,
    approved_at: time(approval.approvedAt),
    approvers: approval.approvers.map((a) => ({ subject: a.subject, issuer: a.issuer })),
  };
  if (approval.argumentsSha256 !== undefined) out.arguments_sha256 = approval.argumentsSha256;
  return out;
}
