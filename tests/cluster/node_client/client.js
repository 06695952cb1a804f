// Foreign-client test of quarry.v1.Quarry (the router's public API) from Node.js: @grpc/grpc-js +
// @grpc/proto-loader load the repository's protos at run time, and health goes through the grpc-health-check
// package's own client definition. Covers ListModels, GetModelInfo, Tokenize (text and chat), Detokenize,
// Generate, GenerateStream, Chat and ChatStream with a tool, cancellation and an INVALID_ARGUMENT case.
// Usage: node client.js --addr 127.0.0.1:PORT --model-dir DIR --workers N
'use strict';
const fs = require('fs');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const healthCheck = require('grpc-health-check');

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.addr || !args['model-dir']) {
  console.error('usage: node client.js --addr HOST:PORT --model-dir DIR [--workers N]');
  process.exit(2);
}
const workers = Number(args.workers || 1);
const root = path.resolve(__dirname, '../../..');
const CALL_MS = 60000;  // per-call deadline
const deadline = () => new Date(Date.now() + CALL_MS);

const def = protoLoader.loadSync('quarry/v1/quarry.proto', {
  includeDirs: [path.join(root, 'proto')], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true,
});
const quarryPkg = grpc.loadPackageDefinition(def).quarry.v1;
const channelOptions = { 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20 };
const quarry = new quarryPkg.Quarry(args.addr, grpc.credentials.createInsecure(), channelOptions);
const HealthClient = grpc.makeClientConstructor(healthCheck.service, 'grpc.health.v1.Health');
const health = new HealthClient(args.addr, grpc.credentials.createInsecure());

const unary = (client, method, req) => new Promise((resolve, reject) =>
  client[method](req, { deadline: deadline() }, (err, resp) => (err ? reject(err) : resolve(resp))));
const unaryStatus = (client, method, req) =>
  unary(client, method, req).then((resp) => ({ code: grpc.status.OK, resp }), (err) => ({ code: err.code, details: err.details }));

// Reads a server stream to its end; resolves with {messages, code, details}.
function stream(method, req, { cancelAfter } = {}) {
  return new Promise((resolve) => {
    const call = quarry[method](req, { deadline: deadline() });
    const messages = [];
    call.on('data', (m) => {
      messages.push(m);
      if (cancelAfter !== undefined && messages.length >= cancelAfter) call.cancel();
    });
    call.on('error', (err) => resolve({ messages, code: err.code, details: err.details }));
    call.on('status', (s) => { if (s.code === grpc.status.OK) resolve({ messages, code: s.code }); });
  });
}

let failures = 0;
function check(cond, what) {
  console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`);
  if (!cond) failures++;
}
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

const weatherTool = {
  name: 'get_weather',
  description: 'Current weather for a city',
  parameters_json: JSON.stringify({ type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }),
};
const chatRequest = {
  messages: [{ role: 'ROLE_USER', content: 'What is the weather in Paris?' }],
  tools: [weatherTool],
  sampling: { temperature: 0 },
  stopping: { max_tokens: 12 },
  output: { return_token_ids: true, include_usage: true },
};

async function main() {
  const config = JSON.parse(fs.readFileSync(path.join(args['model-dir'], 'config.json'), 'utf8'));

  // Health through grpc-health-check's service definition.
  for (const service of ['', 'liveness', 'readiness']) {
    const h = await unary(health, 'check', { service });
    check(h.status === 'SERVING', `health '${service}' is ${h.status}`);
  }
  const unknownHealth = await unaryStatus(health, 'check', { service: 'no-such-service' });
  check(unknownHealth.code === grpc.status.NOT_FOUND, `health of an unknown service: ${unknownHealth.code} (NOT_FOUND)`);

  // Model discovery.
  const models = await unary(quarry, 'ListModels', {});
  check(models.models.length === 1, `ListModels: ${models.models.map((m) => m.id).join(', ')}`);
  const info = (await unary(quarry, 'GetModelInfo', {})).model_info;
  check(info.id === models.models[0].id, `GetModelInfo id '${info.id}'`);
  check(info.vocab_size === config.vocab_size, `vocab_size ${info.vocab_size} == config ${config.vocab_size}`);
  check(info.max_model_len === 512, `max_model_len ${info.max_model_len} == 512`);
  check(info.ready_worker_groups === workers, `ready_worker_groups ${info.ready_worker_groups} == ${workers}`);
  check(info.architecture === 'GraniteMoeHybridForCausalLM', `architecture ${info.architecture}`);
  const unknownModel = await unaryStatus(quarry, 'GetModelInfo', { model: 'no-such-model' });
  check(unknownModel.code === grpc.status.NOT_FOUND, `unknown model: ${unknownModel.code} (NOT_FOUND)`);

  // Tokenize / Detokenize round trip.
  const text = 'Hello world, this is Quarry.';
  const tok = await unary(quarry, 'Tokenize', { text, return_token_strings: true });
  check(tok.count > 0 && tok.count === tok.token_ids.length, `Tokenize: ${tok.count} tokens [${tok.token_ids}]`);
  check(tok.token_strings.length === tok.count, 'Tokenize: one token string per id');
  check(tok.max_model_len === 512, `Tokenize: max_model_len ${tok.max_model_len}`);
  const detok = await unary(quarry, 'Detokenize', { token_ids: tok.token_ids });
  check(detok.text === text, `Detokenize round trip: '${detok.text}'`);

  // Generate: unary and streamed, greedy, same tokens.
  const genReq = {
    text: 'Once upon a time',
    sampling: { temperature: 0 },
    stopping: { max_tokens: 10, ignore_eos: true },
    output: { return_token_ids: true, include_usage: true },
  };
  const gen = await unary(quarry, 'Generate', genReq);
  check(gen.token_ids.length === 10, `Generate: ${gen.token_ids.length} tokens`);
  check(gen.finish_reason === 'FINISH_REASON_LENGTH', `Generate: finish_reason ${gen.finish_reason}`);
  check(gen.usage.completion_tokens === 10 && gen.usage.total_tokens === gen.usage.prompt_tokens + 10,
        `Generate: usage ${JSON.stringify(gen.usage)}`);
  check(gen.timing.total_us > 0, `Generate: timing.total_us ${gen.timing.total_us}`);
  const genText = await unary(quarry, 'Detokenize', { token_ids: gen.token_ids });
  check(genText.text === gen.text, 'Generate: text == Detokenize(token_ids)');
  const gs = await stream('GenerateStream', genReq);
  check(gs.code === grpc.status.OK, `GenerateStream: status ${gs.code}`);
  const streamedIds = gs.messages.flatMap((m) => m.token_ids);
  check(same(streamedIds, gen.token_ids), `GenerateStream: token ids == unary [${streamedIds}]`);
  check(gs.messages.map((m) => m.text).join('') === gen.text, 'GenerateStream: text == unary');
  const lastGen = gs.messages[gs.messages.length - 1];
  check(lastGen && lastGen.finish_reason === 'FINISH_REASON_LENGTH' && lastGen.usage.completion_tokens === 10,
        'GenerateStream: last message has finish_reason and usage');
  check(gs.messages.slice(0, -1).every((m) => m.finish_reason === 'FINISH_REASON_UNSPECIFIED'),
        'GenerateStream: only the last message is final');

  // Chat with a tool: the tool reaches the template, and Chat / ChatStream agree.
  const rendered = await unary(quarry, 'Tokenize', { chat: chatRequest });
  check(rendered.rendered_prompt.includes('get_weather') && rendered.rendered_prompt.includes('Paris'),
        'Tokenize(chat): the rendered prompt lists the tool and the message');
  const chat = await unary(quarry, 'Chat', chatRequest);
  check(chat.usage.prompt_tokens === rendered.count, `Chat: prompt_tokens ${chat.usage.prompt_tokens} == ${rendered.count}`);
  check(['FINISH_REASON_STOP', 'FINISH_REASON_LENGTH', 'FINISH_REASON_TOOL_CALLS'].includes(chat.finish_reason),
        `Chat: finish_reason ${chat.finish_reason}`);
  check(chat.usage.completion_tokens >= 1 && chat.usage.completion_tokens <= 12, `Chat: ${chat.usage.completion_tokens} tokens`);
  const cs = await stream('ChatStream', chatRequest);
  check(cs.code === grpc.status.OK, `ChatStream: status ${cs.code}`);
  check(same(cs.messages.flatMap((m) => m.token_ids), chat.token_ids), 'ChatStream: token ids == Chat');
  check(cs.messages.map((m) => m.content).join('') === chat.content, 'ChatStream: content == Chat');

  // Cancellation mid-stream.
  const cancelled = await stream('GenerateStream', { text: 'Cancel me', stopping: { max_tokens: 400, ignore_eos: true },
                                                     output: { return_token_ids: true } }, { cancelAfter: 1 });
  check(cancelled.code === grpc.status.CANCELLED, `cancel: status ${cancelled.code} (CANCELLED)`);

  // Bad input: INVALID_ARGUMENT naming the field; the service keeps answering.
  const bad = await unaryStatus(quarry, 'Generate', { text: 'hi', sampling: { temperature: -1 } });
  check(bad.code === grpc.status.INVALID_ARGUMENT && /sampling\.temperature/.test(bad.details),
        `temperature -1: ${bad.code} '${bad.details}'`);
  const badRole = await unaryStatus(quarry, 'Chat', { messages: [{ role: 'ROLE_UNSPECIFIED', content: 'x' }] });
  check(badRole.code === grpc.status.INVALID_ARGUMENT && /messages\[0\]\.role/.test(badRole.details),
        `unspecified role: ${badRole.code} '${badRole.details}'`);
  const badIds = await unaryStatus(quarry, 'Generate', { token_ids: { ids: [config.vocab_size] } });
  check(badIds.code === grpc.status.INVALID_ARGUMENT && /token_ids\.ids\[0\]/.test(badIds.details),
        `token id = vocab_size: ${badIds.code} '${badIds.details}'`);
  const after = await unary(quarry, 'Generate', { text: 'still serving', stopping: { max_tokens: 3, ignore_eos: true } });
  check(after.usage.completion_tokens === 3, 'a normal request after the bad ones');
}

main()
  .catch((err) => {
    console.log(`FAIL unexpected error: ${err.stack || err}`);
    failures++;
  })
  .finally(() => {
    quarry.close();
    health.close();
    console.log(failures === 0 ? 'node client: all checks passed' : `node client: ${failures} check(s) failed`);
    process.exit(failures === 0 ? 0 : 1);
  });
