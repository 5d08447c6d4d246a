// Worker thread of scim_server.mjs: formats stored resources with scimmy's
// Schema classes (exactly what the server does on a cache miss) so the
// server's cache is warm sooner. scimmy spends ~0.3 ms on one user, so a
// first walk of 10,000 users would otherwise take seconds of one core.
//
// workerData: {basepath, jobs: [{kind: "User"|"Group", id, version, raw}]};
// posts batches of {kind, id, version, formatted} and ends.
import { parentPort, workerData } from 'node:worker_threads';
import SCIMMY from 'scimmy';

SCIMMY.Schemas.User.extend(SCIMMY.Schemas.EnterpriseUser, false);
const SCHEMAS = { User: SCIMMY.Schemas.User, Group: SCIMMY.Schemas.Group };
const BATCH = 100;

let batch = [];
for (const { kind, id, version, raw } of workerData.jobs) {
  const basepath = `${workerData.basepath}/${kind}s`;
  const formatted = JSON.parse(JSON.stringify(new SCHEMAS[kind](raw, 'out', basepath)));
  batch.push({ kind, id, version, formatted });
  if (batch.length === BATCH) {
    parentPort.postMessage(batch);
    batch = [];
  }
}
if (batch.length) parentPort.postMessage(batch);
