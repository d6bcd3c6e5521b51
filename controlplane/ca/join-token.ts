/**
 * Join tokens: `MESHTKN-1-<sha256 of the root CA cert, hex>-<secret>`.
 * The digest lets a joining node check the CA it is shown before it sends
 * anything else (no trust on first use); the secret proves it may join, with a
 * role. Secrets are compared in constant time.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { MeshError, ValidationError } from '../../src/common/errors.js';
import type { NodeRole } from './authority.js';
import { certificateDigest } from './x509.js';

const PREFIX = 'MESHTKN';
const VERSION = '1';
const SECRET_CHARS = 25;
const TOKEN_RE = /^MESHTKN-1-([0-9a-f]{64})-([a-z0-9]{25})$/;

export interface ParsedJoinToken {
  rootDigestHex: string;
  secret: string;
}

export function parseJoinToken(token: string): ParsedJoinToken {
  const m = TOKEN_RE.exec(token);
  if (m === null)
    throw new ValidationError(
      'joinToken',
      `join token: expected MESHTKN-1-<64 hex digits>-<25 characters a-z0-9>, got a ${token.length}-character string that does not match`,
    );
  return { rootDigestHex: m[1]!, secret: m[2]! };
}

export function newJoinToken(rootDigestHex: string): string {
  // base36 of 16 random bytes, padded: ~128 bits of secret.
  const secret = BigInt(`0x${randomBytes(16).toString('hex')}`)
    .toString(36)
    .padStart(SECRET_CHARS, '0')
    .slice(-SECRET_CHARS);
  return `${PREFIX}-${VERSION}-${rootDigestHex}-${secret}`;
}

/**
 * The joining node's first check: the root certificate a manager showed must
 * hash to the token's digest. Throws CA_DIGEST_MISMATCH otherwise.
 */
export function verifyShownRoot(token: string, shownRootPem: string): void {
  const { rootDigestHex } = parseJoinToken(token);
  const shown = certificateDigest(shownRootPem);
  if (!constantTimeEqual(shown, rootDigestHex))
    throw new MeshError(
      'CA_DIGEST_MISMATCH',
      `the root CA shown by the manager (sha256 ${shown}) does not match the join token's digest (${rootDigestHex}); refusing to join`,
    );
}

export function constantTimeEqual(a: string, b: string): boolean {
  // Hash first so unequal lengths take the same time and never throw.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export interface JoinTokenState {
  worker: string;
  manager: string;
  /** Tokens stop working after this time (ms since epoch); undefined = no expiry. */
  expiresAtMs?: number;
}

/** Holds the current worker and manager tokens; pure apart from randomness for new secrets. */
export class JoinTokens {
  private state: JoinTokenState;

  constructor(
    private rootDigestHex: string,
    state?: JoinTokenState,
  ) {
    this.state = state ?? { worker: newJoinToken(rootDigestHex), manager: newJoinToken(rootDigestHex) };
  }

  static forRoot(rootCertPem: string): JoinTokens {
    return new JoinTokens(certificateDigest(rootCertPem));
  }

  current(): JoinTokenState {
    return { ...this.state };
  }

  /** A rotated-out token stops working at once; the other role's token is untouched. */
  rotate(role: NodeRole, expiresAtMs?: number): string {
    const token = newJoinToken(this.rootDigestHex);
    this.state = { ...this.state, [role]: token };
    if (expiresAtMs !== undefined) this.state.expiresAtMs = expiresAtMs;
    return token;
  }

  setExpiry(expiresAtMs: number | undefined): void {
    if (expiresAtMs === undefined) delete this.state.expiresAtMs;
    else this.state.expiresAtMs = expiresAtMs;
  }

  /** After a root rotation tokens must pin the new root: both are reissued. */
  rebase(rootCertPem: string): void {
    this.rootDigestHex = certificateDigest(rootCertPem);
    this.state = { worker: newJoinToken(this.rootDigestHex), manager: newJoinToken(this.rootDigestHex) };
  }

  /** The role a token grants, or a MeshError JOIN_TOKEN_INVALID naming why not. */
  validate(token: string, nowMs: number): NodeRole {
    const parsed = parseJoinToken(token);
    if (this.state.expiresAtMs !== undefined && nowMs >= this.state.expiresAtMs)
      throw new MeshError('JOIN_TOKEN_INVALID', 'join token has expired; ask an operator for a new one');
    let role: NodeRole | undefined;
    // Compare against both without short-circuit so timing does not reveal which matched.
    const isWorker = constantTimeEqual(token, this.state.worker);
    const isManager = constantTimeEqual(token, this.state.manager);
    if (isManager) role = 'manager';
    else if (isWorker) role = 'worker';
    if (role === undefined) {
      const reason = constantTimeEqual(parsed.rootDigestHex, this.rootDigestHex)
        ? 'its secret is wrong or was rotated out'
        : "it pins a different root CA than this cluster's";
      throw new MeshError('JOIN_TOKEN_INVALID', `join token refused: ${reason}`);
    }
    return role;
  }
}
