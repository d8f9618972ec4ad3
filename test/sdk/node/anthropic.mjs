// Anthropic Node SDK driver for the Sluice end-to-end tests.
//
//   SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \
//   SLUICE_MODEL=claude-sonnet-4-5 node anthropic.mjs \
//     <messages|messages-stream|messages-stream-tools|messages-cache|bad-key|
//      messages-expect-error|messages-stream-expect-error>
//
// Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
// retries, default the SDK's), SLUICE_PROMPT_EXTRA (appended, after a space, to the text of
// every user message). Exit 0 and one JSON line on stdout on success; non-zero and a message
// on stderr on failure.
//
// messages-expect-error succeeds only if messages.create fails with an HTTP API error;
// messages-stream-expect-error succeeds only if client.messages.stream() opens (HTTP 200) and
// the stream then fails (the SDK throws APIError for an `event: error` SSE event).
import Anthropic from '@anthropic-ai/sdk';
import { VERSION } from '@anthropic-ai/sdk/version';

const SDK = `anthropic-node@${VERSION}`;
const scenario = process.argv[2];

function fail(msg) {
  console.error(`anthropic.mjs ${scenario ?? ''}: FAIL: ${msg}`);
  process.exit(1);
}

function env(name, required = true) {
  const v = process.env[name];
  if (required && !v) fail(`environment variable ${name} is required`);
  return v;
}

const baseURL = env('SLUICE_BASE_URL').replace(/\/+$/, '');
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
  return new Anthropic({ apiKey, baseURL, ...(maxRetries === undefined ? {} : { maxRetries }) });
}

const hello = [{ role: 'user', content: userText(`Say hello. [marker ${marker}]`) }];

const weatherTool = {
  name: 'get_weather',
  description: 'Get the current weather for a city.',
  input_schema: {
    type: 'object',
    properties: {
      city: { type: 'string' },
      unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
    },
    required: ['city'],
  },
};

// CACHED_SYSTEM is the system prompt of messages-cache; the test looks for its bytes upstream.
const CACHED_SYSTEM = 'You are the Sluice conformance assistant. '.repeat(40).trim();

function textOf(message) {
  return message.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
}

function checkText(text) {
  if (typeof text !== 'string' || text.length === 0) fail(`empty answer text: ${JSON.stringify(text)}`);
  if (expectText && text !== expectText) fail(`text ${JSON.stringify(text)} != expected ${JSON.stringify(expectText)}`);
}

// errorSummary describes an SDK error; code (error.error.type) and message come from the parsed
// error body (err.error is the whole body), falling back to the SDK's own message.
function errorSummary(err) {
  const body = err?.error && typeof err.error === 'object' ? err.error : null;
  const inner = body?.error && typeof body.error === 'object' ? body.error : null;
  const bodyMessage = typeof inner?.message === 'string' ? inner.message : null;
  return {
    error_class: err?.constructor?.name ?? err?.name ?? null,
    status: typeof err?.status === 'number' ? err.status : null,
    code: inner?.type ?? null,
    message: bodyMessage ?? err?.message ?? String(err),
    sdk_message: err?.message ?? String(err),
  };
}

function checkUsage(usage) {
  if (!usage) fail('usage missing');
  for (const k of ['input_tokens', 'output_tokens']) {
    if (typeof usage[k] !== 'number') fail(`usage.${k} missing: ${JSON.stringify(usage)}`);
  }
  if (usage.input_tokens <= 0) fail(`usage.input_tokens is ${usage.input_tokens}`);
}

function summary(message, extra = {}) {
  return {
    id: message.id, model: message.model, text: textOf(message), stop_reason: message.stop_reason,
    usage: message.usage, ...extra,
  };
}

const scenarios = {
  async messages() {
    const { data, response } = await client()
      .messages.create({ model, max_tokens: 256, messages: hello })
      .withResponse();
    checkText(textOf(data));
    checkUsage(data.usage);
    if (data.stop_reason !== 'end_turn') fail(`stop_reason ${data.stop_reason}, want end_turn`);
    return summary(data, { sluice_request_id: response.headers.get('x-sluice-request-id') });
  },

  async 'messages-stream'() {
    const stream = client().messages.stream({ model, max_tokens: 256, messages: hello });
    let streamed = '';
    stream.on('text', (delta) => { streamed += delta; });
    const message = await stream.finalMessage();
    const text = textOf(message);
    checkText(text);
    if (streamed !== text) fail(`streamed text ${JSON.stringify(streamed)} != final ${JSON.stringify(text)}`);
    checkUsage(message.usage);
    if (message.stop_reason !== 'end_turn') fail(`stop_reason ${message.stop_reason}, want end_turn`);
    return summary(message);
  },

  async 'messages-stream-tools'() {
    const stream = client().messages.stream({
      model, max_tokens: 256, tools: [weatherTool],
      messages: [{ role: 'user', content: userText(`What is the weather in Paris? [marker ${marker}]`) }],
    });
    let partialJSON = '';
    stream.on('inputJson', (delta) => { partialJSON += delta; });
    const message = await stream.finalMessage();
    const block = message.content.find((b) => b.type === 'tool_use');
    if (!block) fail(`no tool_use block: ${JSON.stringify(message.content)}`);
    if (block.name !== 'get_weather') fail(`tool name ${block.name}, want get_weather`);
    if (!block.id) fail('tool_use without id');
    if (typeof block.input?.city !== 'string' || !block.input.city) fail(`tool input without city: ${JSON.stringify(block.input)}`);
    if (JSON.stringify(JSON.parse(partialJSON)) !== JSON.stringify(block.input)) fail(`streamed JSON ${partialJSON} != input`);
    if (message.stop_reason !== 'tool_use') fail(`stop_reason ${message.stop_reason}, want tool_use`);
    checkUsage(message.usage);
    return summary(message, { tool_name: block.name, tool_id: block.id, tool_args: block.input });
  },

  async 'messages-cache'() {
    const { data, response } = await client()
      .messages.create({
        model, max_tokens: 256, messages: hello,
        system: [{ type: 'text', text: CACHED_SYSTEM, cache_control: { type: 'ephemeral' } }],
      })
      .withResponse();
    checkText(textOf(data));
    checkUsage(data.usage);
    return summary(data, { sluice_request_id: response.headers.get('x-sluice-request-id') });
  },

  async 'bad-key'() {
    try {
      await client('sk-sluice-invalid').messages.create({ model, max_tokens: 256, messages: hello });
    } catch (err) {
      if (!(err instanceof Anthropic.AuthenticationError)) fail(`expected AuthenticationError, got ${err?.constructor?.name}: ${err}`);
      if (err.status !== 401) fail(`status ${err.status}, want 401`);
      return {
        error: err.constructor.name, status: err.status, type: err.error?.error?.type ?? null,
        body: err.error ?? null, sluice_request_id: err.headers?.get('x-sluice-request-id') ?? null,
      };
    }
    fail('request with an invalid key succeeded');
  },

  async 'messages-expect-error'() {
    let data;
    try {
      data = await client().messages.create({ model, max_tokens: 256, messages: hello });
    } catch (err) {
      if (!(err instanceof Anthropic.APIError) || typeof err.status !== 'number') {
        fail(`expected an API error with an HTTP status, got ${err?.constructor?.name}: ${err?.message ?? err}`);
      }
      return {
        ...errorSummary(err),
        request_id: err.headers?.get?.('x-sluice-request-id') ?? null,
      };
    }
    fail(`request succeeded, want an API error: ${JSON.stringify(data?.content ?? data)}`);
  },

  async 'messages-stream-expect-error'() {
    const stream = client().messages.stream({ model, max_tokens: 256, messages: hello });
    let text = '';
    let events = 0;
    let caught = null;
    let surfacedBy = null;
    try {
      for await (const event of stream) {
        events++;
        if (event.type === 'content_block_delta' && event.delta?.type === 'text_delta') text += event.delta.text ?? '';
      }
    } catch (err) {
      caught = err;
      surfacedBy = 'iterator';
    }
    if (!caught && stream.errored) {
      // MessageStream's async iterator rejects only a read that is pending when the error is
      // emitted; if events were still queued it drains them and ends. done() rejects regardless.
      try { await stream.done(); } catch (err) { caught = err; surfacedBy = 'done'; }
    }
    const response = stream.response;
    if (!response) {
      const detail = caught instanceof Anthropic.APIError ? ` (status ${caught.status}, body ${JSON.stringify(caught.error)})` : '';
      fail(`stream open failed, want HTTP 200 and an error mid-stream: ${caught?.constructor?.name}: ${caught?.message ?? caught}${detail}`);
    }
    if (response.status !== 200) fail(`stream opened with HTTP ${response.status}, want 200`);
    if (!caught) fail(`stream ended cleanly, want an error (text ${JSON.stringify(text)}, ${events} events)`);
    if (!(caught instanceof Anthropic.AnthropicError)) fail(`the stream failed with a non-SDK error ${caught?.constructor?.name}: ${caught?.message ?? caught}`);
    const { error_class, status, code, message, sdk_message } = errorSummary(caught);
    return {
      error_class, text_before_error: text, message, status, code, sdk_message, events,
      surfaced_by: surfacedBy, request_id: response.headers.get('x-sluice-request-id'),
    };
  },
};

if (!scenarios[scenario]) fail(`unknown scenario ${JSON.stringify(scenario)}; one of: ${Object.keys(scenarios).join(', ')}`);
try {
  const out = await scenarios[scenario]();
  console.log(JSON.stringify({ sdk: SDK, scenario, ...out }));
} catch (err) {
  const detail = err instanceof Anthropic.APIError ? ` (status ${err.status}, body ${JSON.stringify(err.error)})` : '';
  fail(`${err?.constructor?.name ?? 'Error'}: ${err?.message ?? err}${detail}`);
}
