#!/usr/bin/env node
// A second, independent agent: written from proto/idsync/v1/agent.proto
// alone with npm's @grpc/grpc-js and @grpc/proto-loader (no idsync code),
// to show the agent spine is language-neutral.
//
//   node node_agent.mjs --dispatcher 127.0.0.1:50051 --registration-token T
//        --name N --identities 5
//
// Registers with the one-time token, connects, says hello, and answers
// every assignment with `--identities` identities ("node-0", ...) in chunks
// of two, waiting for each chunk's ack before sending past the window.
// Prints one JSON line per milestone on stdout ({"registered": id},
// {"welcome": ...}, {"done": run_id}) and exits after the first run.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const { values: args } = parseArgs({
  options: {
    dispatcher: { type: 'string' },
    'registration-token': { type: 'string' },
    name: { type: 'string', default: 'node-agent' },
    identities: { type: 'string', default: '5' },
  },
});

const definition = protoLoader.loadSync('idsync/v1/agent.proto', {
  includeDirs: [path.join(ROOT, 'proto')],
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
});
const { AgentSpine } = grpc.loadPackageDefinition(definition).idsync.v1;
const client = new AgentSpine(args.dispatcher, grpc.credentials.createInsecure());
const say = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const registered = await new Promise((resolve, reject) => {
  client.Register({ registration_token: args['registration-token'], name: args.name },
    (err, res) => (err ? reject(err) : resolve(res)));
});
say({ registered: registered.agent_id });

const metadata = new grpc.Metadata();
metadata.add('authorization', `Bearer ${registered.agent_token}`);
const stream = client.Connect(metadata);
stream.write({ hello: { version: 'node-agent/1', connector_types: ['csv'], capacity: 1 } });
const heartbeat = setInterval(() => stream.write({ heartbeat: { unix_ms: String(Date.now()) } }), 5000);

const total = Number(args.identities);
let acked = 0;
let onAck = null;
async function runAssignment(a) {
  const chunks = [];
  for (let i = 0; i < total; i += 2) {
    const ids = [];
    for (let j = i; j < Math.min(total, i + 2); j++) {
      ids.push({ external_id: `node-${j}`, email: `node-${j}@example.com`,
        first_name: 'Node', last_name: `Agent${j}`, status: 'active' });
    }
    chunks.push(ids);
  }
  for (let k = 0; k < chunks.length; k++) {
    const sequence = k + 1;
    while (sequence - acked > a.window) {
      await new Promise((r) => { onAck = r; });
    }
    stream.write({ chunk: { run_id: a.run_id, assignment: a.assignment,
      chunk: { sequence: String(sequence), identities: chunks[k],
        resume_token: `node:${sequence}` } } });
  }
  while (acked < chunks.length) await new Promise((r) => { onAck = r; });
  stream.write({ done: { run_id: a.run_id, assignment: a.assignment, code: 0 } });
  say({ done: a.run_id });
  setTimeout(() => { clearInterval(heartbeat); stream.end(); process.exit(0); }, 200);
}

stream.on('data', (m) => {
  if (m.welcome) say({ welcome: m.welcome });
  if (m.ack) {
    acked = Math.max(acked, Number(m.ack.sequence));
    if (onAck) { const r = onAck; onAck = null; r(); }
  }
  if (m.assign) runAssignment(m.assign);
});
stream.on('error', (e) => { say({ error: e.message }); process.exit(1); });
