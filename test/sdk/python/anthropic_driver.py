"""Anthropic Python SDK driver for the Sluice end-to-end tests.

    SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \\
    SLUICE_MODEL=claude-sonnet-4-6 python anthropic_driver.py \\
        <messages|messages-stream|messages-stream-tools|messages-cache|bad-key>

Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
retries, default the SDK's). Exit 0 and one JSON line on stdout on success; non-zero and a
message on stderr on failure.
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


def hello():
    return [{"role": "user", "content": f"Say hello. [marker {env('SLUICE_MARKER')}]"}]


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
                "content": f"What is the weather in Paris? [marker {env('SLUICE_MARKER')}]",
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


SCENARIOS = {
    "messages": messages,
    "messages-stream": messages_stream,
    "messages-stream-tools": messages_stream_tools,
    "messages-cache": messages_cache,
    "bad-key": bad_key,
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
