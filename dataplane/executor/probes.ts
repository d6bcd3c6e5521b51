import { connect } from 'node:net';
import { execa } from 'execa';
import type { HealthProbe } from './types.js';

/**
 * Runs one health probe. Inside a sandbox (netnsName set) every probe runs as a
 * small command in that namespace: TCP and HTTP probes use bash's /dev/tcp,
 * which costs a fork, not a Node start. On the host network TCP and HTTP
 * probes connect directly.
 */
export interface ProbeResult {
  passed: boolean;
  /** First bytes of the probe's output or error, for `service ps`/inspect. */
  output: string;
}

const OUTPUT_LIMIT = 512;
const HTTP_PATH = /^\/[\x21-\x7e]*$/;

export async function runProbe(
  probe: HealthProbe,
  netnsName: string | undefined,
  timeoutMs: number,
): Promise<ProbeResult> {
  switch (probe.kind) {
    case 'command':
      return runCommand(probe.command, netnsName, timeoutMs);
    case 'tcp':
      if (netnsName !== undefined)
        return runCommand(
          ['bash', '-c', 'exec 3<>"/dev/tcp/127.0.0.1/$0"', String(probe.port)],
          netnsName,
          timeoutMs,
        );
      return tcpConnect(probe.port, timeoutMs);
    case 'http': {
      if (!HTTP_PATH.test(probe.path))
        return {
          passed: false,
          output: `health check path must start with / and be printable ASCII, got ${JSON.stringify(probe.path)}`,
        };
      // Status line only; 2xx and 3xx pass, like `curl -f`.
      const script =
        'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1; ' +
        'printf "GET %s HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" "$1" >&3; ' +
        'read -r proto status rest <&3; echo "$proto $status $rest"; ' +
        'case "$status" in 2??|3??) exit 0;; *) exit 1;; esac';
      return runCommand(['bash', '-c', script, String(probe.port), probe.path], netnsName, timeoutMs);
    }
  }
}

async function runCommand(
  argv: string[],
  netnsName: string | undefined,
  timeoutMs: number,
): Promise<ProbeResult> {
  const full = netnsName === undefined ? argv : ['ip', 'netns', 'exec', netnsName, ...argv];
  const [file, ...args] = full as [string, ...string[]];
  const result = await execa(file, args, {
    reject: false,
    timeout: timeoutMs,
    all: true,
    stdin: 'ignore',
    maxBuffer: 64 * 1024,
  });
  const text = typeof result.all === 'string' ? result.all : '';
  if (result.timedOut) return { passed: false, output: `health check timed out after ${timeoutMs} ms` };
  return { passed: result.exitCode === 0, output: text.slice(0, OUTPUT_LIMIT) };
}

function tcpConnect(port: number, timeoutMs: number): Promise<ProbeResult> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ passed: false, output: `tcp connect to port ${port} timed out after ${timeoutMs} ms` });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ passed: true, output: '' });
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      resolve({ passed: false, output: err.message.slice(0, OUTPUT_LIMIT) });
    });
  });
}
