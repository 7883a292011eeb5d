/**
 * The errors of this package. A refused token or call throws a `VerificationError` subclass
 * whose `code` is the stable reason code mandate's Rust verifier gives (`TokenError::code()`);
 * a holder operation given bad input throws `InvalidInput` naming the field. Messages never
 * contain a token, a proof or a key.
 */

/** Why a token or a call was refused; `code` is the stable reason code. */
export abstract class VerificationError extends Error {
  abstract readonly code: string;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The token is larger than the verifier parses. */
export class TooLarge extends VerificationError {
  readonly code = "too_large";
  constructor(limit: number) {
    super(`token larger than ${limit} bytes`);
  }
}

/** The token does not follow the mandate/v1 schema. */
export class Malformed extends VerificationError {
  readonly code = "malformed";
  constructor(reason = "not a mandate/v1 token") {
    super(reason);
  }
}

/** More blocks than the verifier accepts. */
export class TooManyBlocks extends VerificationError {
  readonly code = "too_many_blocks";
  constructor() {
    super("too many blocks");
  }
}

/** A block after the authority is not one of the mandate/v1 shapes. */
export class NotMandateBlock extends VerificationError {
  readonly code = "not_mandate_block";
  constructor(readonly index: number, readonly reason: string) {
    super(`block ${index} is not a mandate/v1 block: ${reason}`);
  }
}

/** The token names a root key the verifier does not know (or keys are too old to trust). */
export class UnknownKey extends VerificationError {
  readonly code = "unknown_key";
  constructor() {
    super("signed with an unknown root key");
  }
}

/** A signature does not verify. */
export class BadSignature extends VerificationError {
  readonly code = "bad_signature";
  constructor() {
    super("a signature does not verify");
  }
}

/** The mandate, or a block's shorter expiry, has passed. */
export class Expired extends VerificationError {
  readonly code = "expired";
  constructor() {
    super("the mandate has expired");
  }
}

/** One of the token's revocation ids is revoked. */
export class Revoked extends VerificationError {
  readonly code = "revoked";
  constructor() {
    super("the mandate has been revoked");
  }
}

/** An attestation block is not what it claims. */
export class ForgedAttestation extends VerificationError {
  readonly code = "forged_attestation";
  constructor(reason: string) {
    super(`forged attestation: ${reason}`);
  }
}

/** A block moves the holder binding without the holder's signature. */
export class ForgedBinding extends VerificationError {
  readonly code = "forged_binding";
  constructor(reason: string) {
    super(`forged binding: ${reason}`);
  }
}

/** What is wrong with a proof of possession (as the Rust `ProofError`). */
export type ProofProblem =
  | "missing" | "unbound" | "malformed" | "signature" | "wrong_key" | "method" | "url"
  | "stale" | "token_hash" | "replayed" | "nonce" | "busy";

/** The proof of possession is missing or refused. `code` is the RFC 9449 error code. */
export class ProofRefused extends VerificationError {
  readonly code: "invalid_dpop_proof" | "use_dpop_nonce";
  constructor(readonly problem: ProofProblem, message: string) {
    super(message);
    this.code = problem === "nonce" ? "use_dpop_nonce" : "invalid_dpop_proof";
  }
}

/** The call's arguments are outside a constraint of the mandate. */
export class ArgumentNotAllowed extends VerificationError {
  readonly code = "argument_not_allowed";
  constructor(readonly argument: string, readonly requirement: string) {
    super(`argument \`${argument}\` ${requirement}`);
  }
}

/**
 * The operation's approval is bound to other arguments than the call's (or the verifier was not
 * given the call's arguments).
 */
export class ArgumentsNotApproved extends VerificationError {
  readonly code = "arguments_not_approved";
  constructor(readonly tool: string, readonly operation: string) {
    super(`the call's arguments are not the ones approved for \`${tool}\` \`${operation}\``);
  }
}

/** The request is not granted. */
export class NotAuthorized extends VerificationError {
  readonly code = "not_authorized";
  constructor(reason: string) {
    super(`not authorized: ${reason}`);
  }
}

/** The verifier's revocation list is too old to rely on. */
export class RevocationsStale extends VerificationError {
  readonly code = "revocations_stale";
  constructor(reason: string) {
    super(`revocation list stale: ${reason}`);
  }
}

/** The Biscuit library refused the token for another reason. */
export class Invalid extends VerificationError {
  readonly code = "invalid";
  constructor(reason: string) {
    super(`biscuit: ${reason}`);
  }
}

/** Bad input to a holder operation; `field` names the part at fault. Nothing was changed. */
export class InvalidInput extends Error {
  constructor(readonly field: string, reason: string) {
    super(`${field}: ${reason}`);
    this.name = "InvalidInput";
  }
}
