// OpenAI Node SDK driver for the Sluice end-to-end tests.
//
//   SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \
//   SLUICE_MODEL=gpt-4o-mini node openai.mjs <chat|chat-stream|chat-stream-tools|bad-key>
//
// Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
// retries, default the SDK's). Exit 0 and one JSON line on stdout on success; non-zero and a
// message on stderr on failure.
import OpenAI from 'openai';
import { VERSION } from 'openai/version';

const SDK = `openai-node@${VERSION}`;

function fail(msg) {
  console.error(`openai.mjs ${scenario ?? ''}: FAIL: ${msg}`);
  process.exit(1);
}

function env(name, required = true) {
  const v = process.env[name];
  if (required && !v) fail(`environment variable ${name} is required`);
  return v;
}

const scenario = process.argv[2];
const baseURL = env('SLUICE_BASE_URL').replace(/\/+$/, '') + '/v1';
const marker = env('SLUICE_MARKER');
const model = env('SLUICE_MODEL');
const expectText = env('SLUICE_EXPECT_TEXT', false);
const maxRetries = process.env.SLUICE_MAX_RETRIES ? Number(process.env.SLUICE_MAX_RETRIES) : undefined;

function client(apiKey = env('SLUICE_KEY')) {
  return new OpenAI({ apiKey, baseURL, ...(maxRetries === undefined ? {} : { maxRetries }) });
}

const messages = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: `Say hello. [marker ${marker}]` },
];

const weatherTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city.',
    strict: true,
    parameters: {
      type: 'object',
      properties: {
        city: { type: 'string' },
        unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
      },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
};

function checkText(text) {
  if (typeof text !== 'string' || text.length === 0) fail(`empty answer text: ${JSON.stringify(text)}`);
  if (expectText && text !== expectText) fail(`text ${JSON.stringify(text)} != expected ${JSON.stringify(expectText)}`);
}

function checkUsage(usage) {
  if (!usage) fail('usage missing');
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    if (typeof usage[k] !== 'number') fail(`usage.${k} missing: ${JSON.stringify(usage)}`);
  }
}

const scenarios = {
  async chat() {
    const { data, response } = await client()
      .chat.completions.create({ model, messages })
      .withResponse();
    const choice = data.choices[0];
    checkText(choice.message.content);
    checkUsage(data.usage);
    return {
      text: choice.message.content, finish_reason: choice.finish_reason, model: data.model,
      usage: data.usage, sluice_request_id: response.headers.get('x-sluice-request-id'),
    };
  },

  async 'chat-stream'() {
    const { data: stream, response } = await client()
      .chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let text = '';
    let usage = null;
    let finish = null;
    let chunks = 0;
    let streamModel = null;
    for await (const chunk of stream) {
      chunks++;
      streamModel = chunk.model;
      for (const c of chunk.choices) {
        text += c.delta?.content ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    checkText(text);
    checkUsage(usage);
    if (finish !== 'stop') fail(`finish_reason ${finish}, want stop`);
    return {
      text, finish_reason: finish, chunks, model: streamModel, usage,
      sluice_request_id: response.headers.get('x-sluice-request-id'),
    };
  },

  async 'chat-stream-tools'() {
    const stream = client().chat.completions.stream({
      model, messages: [{ role: 'user', content: `What is the weather in Paris? [marker ${marker}]` }],
      tools: [weatherTool], stream_options: { include_usage: true },
    });
    let argsDone = null;
    stream.on('tool_calls.function.arguments.done', (e) => { argsDone = e; });
    const completion = await stream.finalChatCompletion();
    const message = await stream.finalMessage();
    const call = message.tool_calls?.[0];
    if (!call) fail(`no tool call in final message: ${JSON.stringify(message)}`);
    if (call.type !== 'function' || call.function.name !== 'get_weather') fail(`unexpected tool call ${JSON.stringify(call)}`);
    if (!call.id) fail('tool call without id');
    let args;
    try { args = JSON.parse(call.function.arguments); } catch (e) { fail(`tool args not JSON: ${call.function.arguments}`); }
    if (typeof args.city !== 'string' || !args.city) fail(`tool args without city: ${call.function.arguments}`);
    if (!argsDone || argsDone.name !== 'get_weather') fail('no tool_calls.function.arguments.done event');
    const finish = completion.choices[0].finish_reason;
    if (finish !== 'tool_calls') fail(`finish_reason ${finish}, want tool_calls`);
    return {
      tool_name: call.function.name, tool_id: call.id, tool_args: args,
      parsed_arguments: call.function.parsed_arguments ?? null,
      finish_reason: finish, model: completion.model, usage: completion.usage ?? null,
    };
  },

  async 'bad-key'() {
    try {
      await client('sk-sluice-invalid').chat.completions.create({ model, messages });
    } catch (err) {
      if (!(err instanceof OpenAI.AuthenticationError)) fail(`expected AuthenticationError, got ${err?.constructor?.name}: ${err}`);
      if (err.status !== 401) fail(`status ${err.status}, want 401`);
      return {
        error: err.constructor.name, status: err.status, code: err.code ?? null, type: err.type ?? null,
        body: err.error ?? null, sluice_request_id: err.headers?.get('x-sluice-request-id') ?? null,
      };
    }
    fail('request with an invalid key succeeded');
  },
};

if (!scenarios[scenario]) fail(`unknown scenario ${JSON.stringify(scenario)}; one of: ${Object.keys(scenarios).join(', ')}`);
try {
  const out = await scenarios[scenario]();
  console.log(JSON.stringify({ sdk: SDK, scenario, ...out }));
} catch (err) {
  const detail = err instanceof OpenAI.APIError ? ` (status ${err.status}, body ${JSON.stringify(err.error)})` : '';
  fail(`${err?.constructor?.name ?? 'Error'}: ${err?.message ?? err}${detail}`);
}
