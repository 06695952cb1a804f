// Foreign-client test of quarry.worker.v1.Worker from Node.js (@grpc/grpc-js + @grpc/proto-loader, loading the
// repository's proto at run time): Info, GetLoad, health, greedy Generate of every golden case (streamed tokens
// must equal the transformers reference), cancellation, and an INVALID_ARGUMENT check.
// Usage: node client.js --addr 127.0.0.1:PORT --golden tests/data/golden/tiny-b
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.addr || !args.golden) {
  console.error('usage: node client.js --addr HOST:PORT --golden DIR');
  process.exit(2);
}
const root = path.resolve(__dirname, '../../..');
const CALL_MS = 60000;  // per-call deadline
const deadline = () => new Date(Date.now() + CALL_MS);

function load(file, includeDir) {
  const def = protoLoader.loadSync(file, { includeDirs: [includeDir], keepCase: true, longs: Number, enums: String,
                                           defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def);
}
const workerPkg = load('quarry/v1/worker.proto', path.join(root, 'proto')).quarry.worker.v1;
const healthPkg = load('grpc/health/v1/health.proto', path.join(root, 'tests/service/protos')).grpc.health.v1;
const worker = new workerPkg.Worker(args.addr, grpc.credentials.createInsecure());
const health = new healthPkg.Health(args.addr, grpc.credentials.createInsecure());

// Reads int64 tensors from a safetensors file (8-byte LE header length, JSON header, data section).
function readI64Tensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__' || t.dtype !== 'I64') continue;
    const [b, e] = t.data_offsets;
    const vals = [];
    for (let off = 8 + n + b; off < 8 + n + e; off += 8) vals.push(Number(buf.readBigInt64LE(off)));
    out[name] = vals;
  }
  return out;
}

const unary = (client, method, req) => new Promise((resolve, reject) =>
  client[method](req, { deadline: deadline() }, (err, resp) => (err ? reject(err) : resolve(resp))));

// Runs one Generate stream; resolves with {tokens, last, status}.
function generate(req, { cancelAfter } = {}) {
  return new Promise((resolve) => {
    const call = worker.Generate(req, { deadline: deadline() });
    const tokens = [];
    let last = null;
    call.on('data', (m) => {
      tokens.push(...m.token_ids);
      last = m;
      if (cancelAfter !== undefined && tokens.length >= cancelAfter) call.cancel();
    });
    call.on('error', (err) => resolve({ tokens, last, status: err.code, details: err.details }));
    call.on('status', (s) => { if (s.code === grpc.status.OK) resolve({ tokens, last, status: s.code }); });
  });
}

let failures = 0;
function check(cond, what) {
  if (cond) {
    console.log(`ok   ${what}`);
  } else {
    console.log(`FAIL ${what}`);
    failures++;
  }
}
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

async function main() {
  const config = JSON.parse(fs.readFileSync(path.join(args.golden, 'config.json'), 'utf8'));
  const info = await unary(worker, 'Info', {});
  check(info.vocab_size === config.vocab_size, `Info.vocab_size ${info.vocab_size} == config ${config.vocab_size}`);
  check(info.num_layers === config.num_hidden_layers, `Info.num_layers ${info.num_layers}`);
  check(info.max_model_len > 0, `Info.max_model_len ${info.max_model_len} > 0`);

  for (const service of ['', 'liveness', 'readiness']) {
    const h = await unary(health, 'Check', { service });
    check(h.status === 'SERVING', `health '${service}' is ${h.status}`);
  }

  const ref = readI64Tensors(path.join(args.golden, 'reference.safetensors'));
  const cases = Object.keys(ref).filter((k) => k.endsWith('.prompt')).map((k) => k.split('.')[0]).sort();
  check(cases.length >= 1, `golden cases: ${cases.join(', ')}`);
  const greedy = (c, id) => generate({
    request_id: id, prompt_token_ids: ref[`${c}.prompt`], sampling: { temperature: 0 },
    stopping: { max_tokens: ref[`${c}.generated`].length, ignore_eos: true },
  });
  for (const c of cases) {
    const r = await greedy(c, `node-${c}`);
    const want = ref[`${c}.generated`];
    check(r.status === grpc.status.OK, `${c}: status ${r.status}`);
    check(same(r.tokens, want), `${c}: streamed [${r.tokens}] == reference [${want}]`);
    check(r.last && r.last.finished && r.last.finish_reason === 'FINISH_REASON_LENGTH',
          `${c}: last message finished with ${r.last && r.last.finish_reason}`);
    check(r.last && r.last.usage.completion_tokens === want.length, `${c}: usage.completion_tokens`);
  }
  // All cases at once (batched inside the engine) give the same tokens.
  const all = await Promise.all(cases.map((c) => greedy(c, `node-batch-${c}`)));
  cases.forEach((c, i) => check(same(all[i].tokens, ref[`${c}.generated`]), `${c}: same tokens when batched`));

  const cancelled = await generate({ request_id: 'node-cancel', prompt_token_ids: ref[`${cases[0]}.prompt`],
                                     stopping: { max_tokens: 200, ignore_eos: true } }, { cancelAfter: 1 });
  check(cancelled.status === grpc.status.CANCELLED, `cancel: status ${cancelled.status} (CANCELLED)`);

  const bad = await generate({ prompt_token_ids: [config.vocab_size] });
  check(bad.status === grpc.status.INVALID_ARGUMENT && /prompt_token_ids\[0\] must be < vocab_size/.test(bad.details),
        `invalid token id: ${bad.status} '${bad.details}'`);

  const load = await unary(worker, 'GetLoad', {});
  check(load.draining === false, `GetLoad: draining ${load.draining}, running ${load.running}`);
}

main()
  .catch((err) => {
    console.log(`FAIL unexpected error: ${err.stack || err}`);
    failures++;
  })
  .finally(() => {
    worker.close();
    health.close();
    console.log(failures === 0 ? 'node client: all checks passed' : `node client: ${failures} check(s) failed`);
    process.exit(failures === 0 ? 0 : 1);
  });
