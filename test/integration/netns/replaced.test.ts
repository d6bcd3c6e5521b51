import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { listNetns, netnsIdentity } from '../../../dataplane/netns/netns.js';
import { networkNetnsName, sandboxNetnsName } from '../../../dataplane/overlay/names.js';
import { OverlayLab } from '../overlay/fixture.js';

const execFileAsync = promisify(execFile);
// This file's own lab prefix (netns engineer's `mdn`), so runs elsewhere never collide.
const PREFIX = 'mdnrp';

async function ipOk(argv: string[]): Promise<boolean> {
  try {
    await execFileAsync('ip', argv, { timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

/** name → device:inode of every namespace the lab host made. */
function identities(prefix: string): Map<string, string | undefined> {
  return new Map(listNetns(prefix).map((n) => [n, netnsIdentity(n)]));
}

describe('namespaces are made once and followed when replaced', () => {
  let ol: OverlayLab;
  let hostPrefix: string;
  let app: string;
  let task: string;

  before(async () => {
    ol = await OverlayLab.up(PREFIX, 1);
    ol.tasks = [{ id: 't1', host: 1, address: '10.10.0.11' }];
    hostPrefix = ol.node(1).host.netnsPrefix;
    app = networkNetnsName(hostPrefix, 'app');
    task = sandboxNetnsName(hostPrefix, 't1');
  });

  after(async () => {
    await ol?.down();
  });

  test("a node's LB address arriving after its network is added in place: the namespace is not made again", async () => {
    const full = ol.stateFor(1);
    const network = full.networks[0];
    assert.ok(network !== undefined);
    await ol.apply(1, { ...full, networks: [{ ...network, lbAddress: '' }] });
    const first = netnsIdentity(app);
    assert.ok(first !== undefined, `${app} exists`);
    assert.ok((await ol.apply(1, { ...full, version: 2 })) > 0, 'the LB address is a change');
    assert.equal(netnsIdentity(app), first, `${app} was deleted and made again`);
    const { stdout } = await execFileAsync('ip', ['-n', app, '-4', '-o', 'addr', 'show', 'dev', 'br0']);
    assert.match(stdout, /10\.10\.0\.251\/24/);
  });

  test('identical applies (new objects, new versions) and resyncs create no namespace', async () => {
    await ol.apply(1);
    const made = identities(hostPrefix);
    assert.deepEqual([...made.keys()].sort(), [app, task].sort());
    for (let version = 10; version < 13; version++) {
      assert.equal(await ol.apply(1, { ...ol.stateFor(1), version }), 0, `apply of version ${version}`);
      assert.equal(await ol.resync(1), 0, `resync after version ${version}`);
    }
    const now = identities(hostPrefix);
    const remade = [...made].filter(([name, id]) => now.get(name) !== id).map(([name]) => name);
    assert.deepEqual(remade, [], 'namespaces created again across identical applies');
  });

  test('a network namespace deleted and made again by hand under the same name is rebuilt by the next resync', async () => {
    await ol.apply(1);
    const before = netnsIdentity(app);
    // By hand, as an operator or a crashed tool would: the helper serving it still
    // holds the old namespace and would keep reporting it healthy.
    await execFileAsync('ip', ['netns', 'del', app]);
    await execFileAsync('ip', ['netns', 'add', app]);
    assert.notEqual(netnsIdentity(app), before);
    assert.equal(await ipOk(['-n', app, 'link', 'show', 'vx0']), false);
    assert.ok((await ol.resync(1)) > 0, 'the resync sees the empty namespace as drift');
    assert.ok(await ipOk(['-n', app, 'link', 'show', 'vx0']), 'vx0 is back in the namespace under the name');
    assert.ok(await ipOk(['-n', app, 'link', 'show', 'br0']), 'br0 is back');
    // The sandbox's veth went with the old namespace; rebuilding it may take one more
    // resync (the kernel tears a namespace down asynchronously; see overlay/README.md).
    let pinged = false;
    for (let i = 0; i < 5 && !pinged; i++) {
      await ol.resync(1);
      pinged = await ipOk(['netns', 'exec', task, 'ping', '-c1', '-W2', '10.10.0.1']);
    }
    assert.ok(pinged, 'the sandbox reaches the gateway through the rebuilt network');
  });
});
