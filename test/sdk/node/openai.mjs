// OpenAI Node SDK driver for the Sluice end-to-end tests.
//
//   SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \
//   SLUICE_MODEL=gpt-4o-mini node openai.mjs \
//     <chat|chat-stream|chat-stream-tools|bad-key|chat-expect-error|chat-stream-expect-error|
//      responses|responses-stream|responses-stream-tools|embeddings>
//
// Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
// retries, default the SDK's), SLUICE_PROMPT_EXTRA (appended, after a space, to the text of
// every user message). Exit 0 and one JSON line on stdout on success; non-zero and a message
// on stderr on failure.
//
// chat-expect-error succeeds only if chat.completions.create fails with an HTTP API error;
// chat-stream-expect-error succeeds only if the stream opens (HTTP 200) and the SDK's
// iterator then throws (the SDK throws APIError for a `data:` payload with an `error` key).
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
const promptExtra = env('SLUICE_PROMPT_EXTRA', false);

// userText is the text of a user message: base plus, when set, SLUICE_PROMPT_EXTRA.
function userText(base) {
  return promptExtra ? `${base} ${promptExtra}` : base;
}

function client(apiKey = env('SLUICE_KEY')) {
  return new OpenAI({ apiKey, baseURL, ...(maxRetries === undefined ? {} : { maxRetries }) });
}

const messages = [
  { role: 'system', content: 'You are a terse assistant.' },
  { role: 'user', content: userText(`Say hello. [marker ${marker}]`) },
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

// errorSummary describes an SDK error; code and message come from the parsed error body
// (err.error is the body's `error` object), falling back to the SDK's own message.
function errorSummary(err) {
  const body = err?.error && typeof err.error === 'object' ? err.error : null;
  const bodyMessage = typeof body?.message === 'string' ? body.message : null;
  return {
    error_class: err?.constructor?.name ?? err?.name ?? null,
    status: typeof err?.status === 'number' ? err.status : null,
    code: body?.code ?? null,
    message: bodyMessage ?? err?.message ?? String(err),
    sdk_message: err?.message ?? String(err),
  };
}

function checkUsage(usage) {
  if (!usage) fail('usage missing');
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    if (typeof usage[k] !== 'number') fail(`usage.${k} missing: ${JSON.stringify(usage)}`);
  }
}

// checkResponsesUsage checks a Responses usage object.
function checkResponsesUsage(usage) {
  if (!usage) fail('usage missing');
  for (const k of ['input_tokens', 'output_tokens', 'total_tokens']) {
    if (typeof usage[k] !== 'number') fail(`usage.${k} missing: ${JSON.stringify(usage)}`);
  }
}

const input = () => [{ role: 'user', content: userText(`Say hello. [marker ${marker}]`) }];

const scenarios = {
  async responses() {
    const { data, response } = await client()
      .responses.create({ model, input: input(), instructions: 'You are terse.' })
      .withResponse();
    checkText(data.output_text);
    checkResponsesUsage(data.usage);
    if (data.status !== 'completed') fail(`status ${data.status}`);
    return { text: data.output_text, model: data.model, usage: data.usage, sluice_request_id: response.headers.get('x-sluice-request-id') };
  },

  // The stream helper, as Codex-style clients use it: every event typed, one terminal event.
  async 'responses-stream'() {
    const stream = client().responses.stream({ model, input: input() });
    const types = [];
    let text = '';
    stream.on('response.output_text.delta', (e) => { text += e.delta; });
    stream.on('event', (e) => { types.push(e.type); });
    const final = await stream.finalResponse();
    checkText(final.output_text);
    if (text !== final.output_text) fail(`deltas ${JSON.stringify(text)} != final ${JSON.stringify(final.output_text)}`);
    const terminal = types.filter((t) => ['response.completed', 'response.failed', 'response.incomplete'].includes(t));
    if (terminal.length !== 1 || terminal[0] !== 'response.completed') fail(`terminal events ${JSON.stringify(terminal)}`);
    if (!types.includes('response.output_item.done')) fail('no response.output_item.done');
    checkResponsesUsage(final.usage);
    return { text: final.output_text, events: types.length, model: final.model, usage: final.usage };
  },

  // A function tool and a custom tool (Codex's apply_patch shape): the call comes back
  // whole through the stream helper.
  async 'responses-stream-tools'() {
    const custom = process.env.SLUICE_TOOL === 'custom';
    const tools = custom
      ? [{ type: 'custom', name: 'apply_patch', description: 'Apply a patch.' }]
      : [{ type: 'function', name: 'get_weather', description: 'Weather for a city.', strict: true,
           parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } },
             required: ['city', 'unit'], additionalProperties: false } }];
    const stream = client().responses.stream({
      model, tools, input: [{ role: 'user', content: userText(`Use the tool. [marker ${marker}]`) }],
    });
    const final = await stream.finalResponse();
    const call = final.output.find((o) => o.type === (custom ? 'custom_tool_call' : 'function_call'));
    if (!call) fail(`no ${custom ? 'custom_tool_call' : 'function_call'} in ${JSON.stringify(final.output)}`);
    if (!call.call_id || call.name !== (custom ? 'apply_patch' : 'get_weather')) fail(`bad call ${JSON.stringify(call)}`);
    if (!custom) {
      try { JSON.parse(call.arguments); } catch { fail(`arguments not JSON: ${call.arguments}`); }
    } else if (typeof call.input !== 'string' || !call.input) fail(`custom call without input: ${JSON.stringify(call)}`);
    return { call_type: call.type, name: call.name, call_id: call.call_id, usage: final.usage };
  },

  // The SDK asks for base64 by default and decodes it.
  async embeddings() {
    const { data, response } = await client()
      .embeddings.create({ model, input: [userText(`first [marker ${marker}]`), 'second'] })
      .withResponse();
    if (data.data.length !== 2 || !Array.isArray(data.data[0].embedding) || data.data[0].embedding.length === 0) {
      fail(`bad embeddings ${JSON.stringify(data).slice(0, 300)}`);
    }
    if (typeof data.usage?.prompt_tokens !== 'number') fail(`usage ${JSON.stringify(data.usage)}`);
    return { n: data.data.length, dims: data.data[0].embedding.length, usage: data.usage,
      sluice_request_id: response.headers.get('x-sluice-request-id') };
  },

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
      model, messages: [{ role: 'user', content: userText(`What is the weather in Paris? [marker ${marker}]`) }],
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

  async 'chat-expect-error'() {
    let data;
    try {
      data = await client().chat.completions.create({ model, messages });
    } catch (err) {
      if (!(err instanceof OpenAI.APIError) || typeof err.status !== 'number') {
        fail(`expected an API error with an HTTP status, got ${err?.constructor?.name}: ${err?.message ?? err}`);
      }
      return {
        ...errorSummary(err),
        request_id: err.headers?.get?.('x-sluice-request-id') ?? null,
      };
    }
    fail(`request succeeded, want an API error: ${JSON.stringify(data?.choices?.[0]?.message ?? data)}`);
  },

  async 'chat-stream-expect-error'() {
    let stream;
    let response;
    try {
      ({ data: stream, response } = await client()
        .chat.completions.create({ model, messages, stream: true, stream_options: { include_usage: true } })
        .withResponse());
    } catch (err) {
      const detail = err instanceof OpenAI.APIError ? ` (status ${err.status}, body ${JSON.stringify(err.error)})` : '';
      fail(`stream open failed, want HTTP 200 and an error mid-stream: ${err?.constructor?.name}: ${err?.message ?? err}${detail}`);
    }
    if (response.status !== 200) fail(`stream opened with HTTP ${response.status}, want 200`);
    let text = '';
    let chunks = 0;
    try {
      for await (const chunk of stream) {
        chunks++;
        for (const c of chunk.choices ?? []) text += c.delta?.content ?? '';
      }
    } catch (err) {
      if (!(err instanceof OpenAI.OpenAIError)) fail(`iterating the stream threw a non-SDK error ${err?.constructor?.name}: ${err?.message ?? err}`);
      const { error_class, status, code, message, sdk_message } = errorSummary(err);
      return {
        error_class, text_before_error: text, message, status, code, sdk_message, chunks,
        request_id: response.headers.get('x-sluice-request-id'),
      };
    }
    fail(`stream ended cleanly, want an error (text ${JSON.stringify(text)}, ${chunks} chunks)`);
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
