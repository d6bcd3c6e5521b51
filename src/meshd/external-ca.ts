/**
 * `meshd init --external-ca URL --external-ca-root FILE`: the cluster's root
 * key stays with a CFSSL-compatible signer; every manager relays CSRs to it
 * (controlplane/ca/external-signer.ts). The founder keeps the setting in
 * <state-dir>/ca/external.json until the replicated store holds it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRootCertificate, type RootCertificate } from '../../controlplane/ca/authority.js';
import type { ExternalCaConfig } from '../../controlplane/ca/ca-state.js';
import { parseCertificate } from '../../controlplane/ca/x509.js';
import { writeFileDurable } from '../common/durable-file.js';
import { errorMessage, ValidationError } from '../common/errors.js';

export interface ExternalCaFlags {
  externalCa?: string | undefined;
  externalCaRoot?: string | undefined;
  externalCaProfile?: string | undefined;
  externalCaTlsCa?: string | undefined;
}

export interface ExternalCaInit {
  config: ExternalCaConfig;
  root: RootCertificate;
}

const FILE = 'external.json';

/** The external CA asked for on the command line, checked; undefined when none was. */
export function externalCaFromFlags(flags: ExternalCaFlags): ExternalCaInit | undefined {
  if (flags.externalCa === undefined) {
    for (const [flag, value] of [
      ['external-ca-root', flags.externalCaRoot],
      ['external-ca-profile', flags.externalCaProfile],
      ['external-ca-tls-ca', flags.externalCaTlsCa],
    ] as const)
      if (value !== undefined) throw new ValidationError(flag, `--${flag} goes with --external-ca URL`);
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(flags.externalCa);
  } catch {
    throw new ValidationError(
      'external-ca',
      `--external-ca must be an http(s) URL, got "${flags.externalCa}"`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ValidationError('external-ca', `--external-ca must be http or https, got "${url.protocol}"`);
  if (flags.externalCaRoot === undefined)
    throw new ValidationError(
      'external-ca-root',
      '--external-ca needs --external-ca-root FILE: the PEM root certificate the signer signs with',
    );
  const root = loadRootCertificate(readPem('external-ca-root', flags.externalCaRoot));
  let tlsCaPem = '';
  if (flags.externalCaTlsCa !== undefined) {
    tlsCaPem = readPem('external-ca-tls-ca', flags.externalCaTlsCa);
    if (url.protocol !== 'https:')
      throw new ValidationError(
        'external-ca-tls-ca',
        '--external-ca-tls-ca is for an https --external-ca URL',
      );
  }
  const profile = flags.externalCaProfile ?? '';
  if (!/^[A-Za-z0-9_.-]{0,64}$/.test(profile))
    throw new ValidationError(
      'external-ca-profile',
      `--external-ca-profile must be a CFSSL profile name, got "${profile}"`,
    );
  return { config: { url: url.href.replace(/\/+$/, ''), profile, tlsCaPem }, root };
}

function readPem(flag: string, path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(flag, `--${flag} ${path}: ${errorMessage(err)}`);
  }
  parseCertificate(text, `--${flag} ${path}`);
  return text;
}

export function saveExternalCa(caDir: string, config: ExternalCaConfig): void {
  writeFileDurable(join(caDir, FILE), `${JSON.stringify(config, null, 2)}\n`, 0o600);
}

/** The founder's saved setting, or undefined when the cluster signs with its own root. */
export function loadExternalCa(caDir: string): ExternalCaConfig | undefined {
  const path = join(caDir, FILE);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as ExternalCaConfig;
}
