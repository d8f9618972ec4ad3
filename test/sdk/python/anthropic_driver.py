"""Anthropic Python SDK driver for the Sluice end-to-end tests.

    SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \\
    SLUICE_MODEL=claude-sonnet-4-6 python anthropic_driver.py \\
        <messages|messages-stream|messages-stream-tools|messages-cache|bad-key|
         messages-expect-error|messages-stream-expect-error>

Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
retries, default the SDK's), SLUICE_PROMPT_EXTRA (appended, after a space, to the text of
every user message). Exit 0 and one JSON line on stdout on success; non-zero and a message
on stderr on failure.

messages-expect-error succeeds only if messages.create fails with an HTTP API error;
messages-stream-expect-error succeeds only if client.messages.stream() opens (HTTP 200) and
iterating it then raises (for an `event: error` SSE event the SDK raises the status error of
the stream's response status: anthropic.APIStatusError with status_code 200).
"""

import json
import os
import sys

import anthropic
from anthropic import Anthropic

SDK = f"anthropic-python@{anthropic.__version__}"
SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ""

# CACHED_SYSTEM is the system prompt of messages-cache; the test looks for its bytes upstream.
CACHED_SYSTEM = " ".join(["You are the Sluice conformance assistant."] * 40)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}


class Fail(Exception):
    pass


def env(name, required=True):
    v = os.environ.get(name, "")
    if required and not v:
        raise Fail(f"environment variable {name} is required")
    return v


def client(api_key=None):
    kwargs = {}
    if os.environ.get("SLUICE_MAX_RETRIES"):
        kwargs["max_retries"] = int(os.environ["SLUICE_MAX_RETRIES"])
    return Anthropic(
        api_key=api_key or env("SLUICE_KEY"),
        base_url=env("SLUICE_BASE_URL").rstrip("/"),
        **kwargs,
    )


def user_text(base):
    """The text of a user message: base plus, when set, SLUICE_PROMPT_EXTRA."""
    extra = env("SLUICE_PROMPT_EXTRA", required=False)
    return f"{base} {extra}" if extra else base


def hello():
    return [
        {"role": "user", "content": user_text(f"Say hello. [marker {env('SLUICE_MARKER')}]")}
    ]


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def check_text(text):
    if not isinstance(text, str) or not text:
        raise Fail(f"empty answer text: {text!r}")
    expect = env("SLUICE_EXPECT_TEXT", required=False)
    if expect and text != expect:
        raise Fail(f"text {text!r} != expected {expect!r}")


def check_usage(usage):
    if usage is None:
        raise Fail("usage missing")
    for k in ("input_tokens", "output_tokens"):
        if not isinstance(getattr(usage, k, None), int):
            raise Fail(f"usage.{k} missing: {usage!r}")
    if usage.input_tokens <= 0:
        raise Fail(f"usage.input_tokens is {usage.input_tokens}")


def error_summary(err):
    """Describe an SDK error; code (error.error.type) and message come from the parsed error
    body (err.body is the whole body), falling back to the SDK's own message."""
    body = err.body if isinstance(getattr(err, "body", None), dict) else {}
    inner = body.get("error") if isinstance(body.get("error"), dict) else {}
    body_message = inner.get("message") if isinstance(inner.get("message"), str) else None
    sdk_message = getattr(err, "message", None) or str(err)
    status = getattr(err, "status_code", None)
    return {
        "error_class": type(err).__name__,
        "status": status if isinstance(status, int) else None,
        "code": inner.get("type"),
        "message": body_message or sdk_message,
        "sdk_message": sdk_message,
    }


def response_header(err, name):
    response = getattr(err, "response", None)
    return response.headers.get(name) if response is not None else None


def summary(message, **extra):
    return {
        "id": message.id,
        "model": message.model,
        "text": text_of(message),
        "stop_reason": message.stop_reason,
        "usage": message.usage.model_dump(mode="json", exclude_none=True),
        **extra,
    }


def messages(**kwargs):
    raw = client().messages.with_raw_response.create(
        model=env("SLUICE_MODEL"), max_tokens=256, messages=hello(), **kwargs
    )
    message = raw.parse()
    check_text(text_of(message))
    check_usage(message.usage)
    if message.stop_reason != "end_turn":
        raise Fail(f"stop_reason {message.stop_reason}, want end_turn")
    return summary(message, sluice_request_id=raw.headers.get("x-sluice-request-id"))


def messages_stream():
    streamed = ""
    with client().messages.stream(
        model=env("SLUICE_MODEL"), max_tokens=256, messages=hello()
    ) as stream:
        for text in stream.text_stream:
            streamed += text
        message = stream.get_final_message()
    text = text_of(message)
    check_text(text)
    if streamed != text:
        raise Fail(f"streamed text {streamed!r} != final {text!r}")
    check_usage(message.usage)
    if message.stop_reason != "end_turn":
        raise Fail(f"stop_reason {message.stop_reason}, want end_turn")
    return summary(message)


def messages_stream_tools():
    partial = ""
    with client().messages.stream(
        model=env("SLUICE_MODEL"),
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=[
            {
                "role": "user",
                "content": user_text(
                    f"What is the weather in Paris? [marker {env('SLUICE_MARKER')}]"
                ),
            }
        ],
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partial += event.partial_json
        message = stream.get_final_message()
    blocks = [b for b in message.content if b.type == "tool_use"]
    if not blocks:
        raise Fail(f"no tool_use block: {message.content!r}")
    block = blocks[0]
    if block.name != "get_weather":
        raise Fail(f"tool name {block.name}, want get_weather")
    if not block.id:
        raise Fail("tool_use without id")
    if not isinstance(block.input, dict) or not block.input.get("city"):
        raise Fail(f"tool input without city: {block.input!r}")
    if json.loads(partial) != block.input:
        raise Fail(f"streamed JSON {partial!r} != input {block.input!r}")
    if message.stop_reason != "tool_use":
        raise Fail(f"stop_reason {message.stop_reason}, want tool_use")
    check_usage(message.usage)
    return summary(message, tool_name=block.name, tool_id=block.id, tool_args=block.input)


def messages_cache():
    return messages(
        system=[
            {"type": "text", "text": CACHED_SYSTEM, "cache_control": {"type": "ephemeral"}}
        ]
    )


def bad_key():
    try:
        client("sk-sluice-invalid").messages.create(
            model=env("SLUICE_MODEL"), max_tokens=256, messages=hello()
        )
    except anthropic.AuthenticationError as err:
        if err.status_code != 401:
            raise Fail(f"status {err.status_code}, want 401")
        body = err.body if isinstance(err.body, dict) else None
        return {
            "error": type(err).__name__,
            "status": err.status_code,
            "type": (body or {}).get("error", {}).get("type"),
            "body": err.body,
            "sluice_request_id": err.response.headers.get("x-sluice-request-id"),
        }
    raise Fail("request with an invalid key succeeded")


def messages_expect_error():
    try:
        message = client().messages.create(
            model=env("SLUICE_MODEL"), max_tokens=256, messages=hello()
        )
    except anthropic.APIStatusError as err:
        return {
            **error_summary(err),
            "request_id": response_header(err, "x-sluice-request-id"),
        }
    except anthropic.AnthropicError as err:
        raise Fail(f"expected an API error with an HTTP status, got {type(err).__name__}: {err}")
    raise Fail(f"request succeeded, want an API error: {getattr(message, 'content', message)!r}")


def messages_stream_expect_error():
    text, events, opened = "", 0, False
    try:
        with client().messages.stream(
            model=env("SLUICE_MODEL"), max_tokens=256, messages=hello()
        ) as stream:
            opened = True
            if stream.response.status_code != 200:
                raise Fail(f"stream opened with HTTP {stream.response.status_code}, want 200")
            request_id = stream.response.headers.get("x-sluice-request-id")
            try:
                for event in stream:
                    events += 1
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        text += event.delta.text or ""
            except anthropic.AnthropicError as err:
                s = error_summary(err)
                return {
                    "error_class": s["error_class"],
                    "text_before_error": text,
                    "message": s["message"],
                    "status": s["status"],
                    "code": s["code"],
                    "sdk_message": s["sdk_message"],
                    "events": events,
                    "request_id": request_id,
                }
    except anthropic.AnthropicError as err:
        # Raised by the `with` statement's request, before iteration began.
        if opened:
            raise
        detail = ""
        if isinstance(err, anthropic.APIStatusError):
            detail = f" (status {err.status_code}, body {json.dumps(err.body)})"
        raise Fail(
            "stream open failed, want HTTP 200 and an error mid-stream: "
            f"{type(err).__name__}: {err}{detail}"
        )
    raise Fail(f"stream ended cleanly, want an error (text {text!r}, {events} events)")


SCENARIOS = {
    "messages": messages,
    "messages-stream": messages_stream,
    "messages-stream-tools": messages_stream_tools,
    "messages-cache": messages_cache,
    "bad-key": bad_key,
    "messages-expect-error": messages_expect_error,
    "messages-stream-expect-error": messages_stream_expect_error,
}


def main():
    try:
        if SCENARIO not in SCENARIOS:
            raise Fail(f"unknown scenario {SCENARIO!r}; one of: {', '.join(SCENARIOS)}")
        out = SCENARIOS[SCENARIO]()
    except Fail as e:
        print(f"anthropic_driver.py {SCENARIO}: FAIL: {e}", file=sys.stderr)
        return 1
    except anthropic.APIStatusError as e:
        print(
            f"anthropic_driver.py {SCENARIO}: FAIL: {type(e).__name__}: {e} "
            f"(status {e.status_code}, body {json.dumps(e.body)})",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - any SDK error is a failure to report
        print(f"anthropic_driver.py {SCENARIO}: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"sdk": SDK, "scenario": SCENARIO, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
