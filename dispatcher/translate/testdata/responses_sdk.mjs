// Drives the Responses direction through the official OpenAI Node SDK: the SDK must parse
// every answer, and its stream accumulator (which throws on events that do not fit the
// response built so far) must build the same response the stream ends with.
//
//   OPENAI_SDK=/abs/path/node_modules/openai BASE_URL=http://127.0.0.1:port/v1 node responses_sdk.mjs
//
// Exits 0 and prints "ok" when every check passes; otherwise prints the failure and exits 1.
const sdk = await import(`${process.env.OPENAI_SDK}/index.mjs`);
const OpenAI = sdk.default;
const client = new OpenAI({ apiKey: 'sk-sluice-test', baseURL: process.env.BASE_URL, maxRetries: 0 });

const applyPatch = {
  type: 'custom', name: 'apply_patch', description: 'Edit files.',
  format: { type: 'grammar', syntax: 'lark', definition: 'start: "*** Begin Patch" /(.|\\n)*/' },
};
const shell = {
  type: 'function', name: 'shell', description: 'Run a command.', strict: false,
  parameters: { type: 'object', properties: { command: { type: 'string' } }, required: ['command'] },
};

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

async function nonStream(marker, tools, want) {
  const r = await client.responses.create({ model: 'gpt-5-codex', instructions: `[${marker}]`, input: 'Fix it.', tools });
  check(r.object === 'response' && r.status === 'completed', `${marker}: status ${r.status}`);
  check(r.usage.input_tokens === want.input && r.usage.input_tokens_details.cached_tokens === want.cached &&
    r.usage.output_tokens === want.output && r.usage.total_tokens === want.input + want.output,
    `${marker}: usage ${JSON.stringify(r.usage)}`);
  return r;
}

async function streamed(marker, tools) {
  const stream = client.responses.stream({ model: 'gpt-5-codex', instructions: `[${marker}]`, input: 'Fix it.', tools });
  const seen = [];
  let last = -1;
  for await (const ev of stream) {
    check(ev.sequence_number === last + 1, `${marker}: sequence ${ev.sequence_number} after ${last}`);
    last = ev.sequence_number;
    seen.push(ev.type);
  }
  const final = await stream.finalResponse();
  return { final, seen };
}

const want = { input: 21 + 8192 + 1536, cached: 8192, output: 393 };

// Text.
let r = await nonStream('sdk-text', undefined, want);
check(r.output_text === 'Hello from the SDK test.', `sdk-text: output_text ${JSON.stringify(r.output_text)}`);
let s = await streamed('sdk-text');
check(s.final.status === 'completed' && s.final.output_text === 'Hello from the SDK test.',
  `sdk-text stream: ${JSON.stringify(s.final)}`);
check(s.seen.at(-1) === 'response.completed', `sdk-text stream: ended with ${s.seen.at(-1)}`);
check(s.final.usage.input_tokens === want.input, `sdk-text stream: usage ${JSON.stringify(s.final.usage)}`);

// Function call.
r = await nonStream('sdk-fn', [shell], want);
let call = r.output.find((o) => o.type === 'function_call');
check(call && call.name === 'shell' && JSON.parse(call.arguments).city === 'Paris', `sdk-fn: ${JSON.stringify(r.output)}`);
s = await streamed('sdk-fn', [shell]);
call = s.final.output.find((o) => o.type === 'function_call');
check(call && JSON.parse(call.arguments).city === 'Paris' && s.seen.includes('response.function_call_arguments.delta'),
  `sdk-fn stream: ${JSON.stringify(s.final.output)}`);

// Custom tool call.
r = await nonStream('sdk-custom', [applyPatch, shell], want);
check(r.output[0].type === 'custom_tool_call' && r.output[0].name === 'apply_patch' && r.output[0].input.length > 0,
  `sdk-custom: ${JSON.stringify(r.output)}`);
s = await streamed('sdk-custom', [applyPatch, shell]);
check(s.final.output[0].type === 'custom_tool_call' && s.final.output[0].input === r.output[0].input,
  `sdk-custom stream: ${JSON.stringify(s.final.output)}`);

// A stream the provider cuts.
s = await streamed('sdk-cut');
check(s.final.status === 'failed' && s.final.error && s.seen.at(-1) === 'response.failed',
  `sdk-cut: ${JSON.stringify(s.final)} ${s.seen}`);

// A provider error before the first byte is an APIError with the provider's status.
try {
  await client.responses.create({ model: 'gpt-5-codex', instructions: '[sdk-429]', input: 'x' });
  check(false, 'sdk-429: no error');
} catch (e) {
  check(e instanceof OpenAI.APIError && e.status === 429 && /slow down/.test(e.message), `sdk-429: ${e}`);
}
console.log('ok');
