import type { RouteSpec } from '../netlink/types.js';
import {
  attachmentSignature,
  routeKey,
  type SandboxAttachment,
  type SandboxesModel,
  type SandboxModel,
} from './model.js';

export type SandboxChange =
  | { type: 'create-sandbox'; sandbox: SandboxModel }
  | { type: 'delete-sandbox'; netns: string; attachments: SandboxAttachment[] }
  /** Repair in place: a task's processes keep their namespace, so it is never recreated while desired. */
  | { type: 'replace-attachment'; netns: string; attachment: SandboxAttachment; existed: boolean }
  | { type: 'set-routes'; netns: string; add: RouteSpec[]; remove: RouteSpec[] }
  | { type: 'write-resolv-conf'; netns: string; content: string }
  | { type: 'loopback-up'; netns: string };

/** Pure: the changes that turn `actual` into `desired`; equal models give []. */
export function planSandboxes(desired: SandboxesModel, actual: SandboxesModel): SandboxChange[] {
  const changes: SandboxChange[] = [];
  for (const [netns, a] of actual.sandboxes) {
    if (!desired.sandboxes.has(netns))
      changes.push({ type: 'delete-sandbox', netns, attachments: a.attachments });
  }
  for (const [netns, d] of desired.sandboxes) {
    const a = actual.sandboxes.get(netns);
    if (a === undefined) {
      changes.push({ type: 'create-sandbox', sandbox: d });
      continue;
    }
    const actualByIf = new Map(a.attachments.map((x) => [x.ifname, x]));
    let replaced = false;
    for (const att of d.attachments) {
      const have = actualByIf.get(att.ifname);
      if (have === undefined || attachmentSignature(have) !== attachmentSignature(att)) {
        changes.push({ type: 'replace-attachment', netns, attachment: att, existed: have !== undefined });
        replaced = true;
      }
    }
    // Replacing an interface drops its routes: re-add them all then.
    const haveRoutes = new Set(replaced ? [] : a.routes.map(routeKey));
    const wantRoutes = new Set(d.routes.map(routeKey));
    const add = d.routes.filter((r) => !haveRoutes.has(routeKey(r)));
    const remove = replaced ? [] : a.routes.filter((r) => !wantRoutes.has(routeKey(r)));
    if (add.length > 0 || remove.length > 0) changes.push({ type: 'set-routes', netns, add, remove });
    if (d.loopbackUp && !a.loopbackUp) changes.push({ type: 'loopback-up', netns });
    if (a.resolvConf !== d.resolvConf)
      changes.push({ type: 'write-resolv-conf', netns, content: d.resolvConf });
  }
  return changes;
}
