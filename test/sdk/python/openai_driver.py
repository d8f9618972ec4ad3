"""OpenAI Python SDK driver for the Sluice end-to-end tests.

    SLUICE_BASE_URL=http://127.0.0.1:8080 SLUICE_KEY=sk-sluice-... SLUICE_MARKER=nonce \\
    SLUICE_MODEL=gpt-4o-mini python openai_driver.py \\
        <chat|chat-stream|chat-stream-tools|bad-key|chat-expect-error|chat-stream-expect-error>

Optional: SLUICE_EXPECT_TEXT (exact answer text to expect), SLUICE_MAX_RETRIES (SDK
retries, default the SDK's), SLUICE_PROMPT_EXTRA (appended, after a space, to the text of
every user message). Exit 0 and one JSON line on stdout on success; non-zero and a message
on stderr on failure.

chat-expect-error succeeds only if chat.completions.create fails with an HTTP API error;
chat-stream-expect-error succeeds only if the stream opens (HTTP 200) and the SDK's iterator
then raises (the SDK raises openai.APIError for a `data:` payload with an `error` key).
"""

import json
import os
import sys

import openai
from openai import OpenAI

SDK = f"openai-python@{openai.__version__}"
SCENARIO = sys.argv[1] if len(sys.argv) > 1 else ""


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
    return OpenAI(
        api_key=api_key or env("SLUICE_KEY"),
        base_url=env("SLUICE_BASE_URL").rstrip("/") + "/v1",
        **kwargs,
    )


def user_text(base):
    """The text of a user message: base plus, when set, SLUICE_PROMPT_EXTRA."""
    extra = env("SLUICE_PROMPT_EXTRA", required=False)
    return f"{base} {extra}" if extra else base


def hello():
    return [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": user_text(f"Say hello. [marker {env('SLUICE_MARKER')}]")},
    ]


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


def check_text(text):
    if not isinstance(text, str) or not text:
        raise Fail(f"empty answer text: {text!r}")
    expect = env("SLUICE_EXPECT_TEXT", required=False)
    if expect and text != expect:
        raise Fail(f"text {text!r} != expected {expect!r}")


def check_usage(usage):
    if usage is None:
        raise Fail("usage missing")
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if not isinstance(getattr(usage, k, None), int):
            raise Fail(f"usage.{k} missing: {usage!r}")


def error_summary(err):
    """Describe an SDK error; code and message come from the parsed error body (err.body is
    the body's `error` object), falling back to the SDK's own message."""
    body = err.body if isinstance(getattr(err, "body", None), dict) else {}
    body_message = body.get("message") if isinstance(body.get("message"), str) else None
    sdk_message = getattr(err, "message", None) or str(err)
    status = getattr(err, "status_code", None)
    return {
        "error_class": type(err).__name__,
        "status": status if isinstance(status, int) else None,
        "code": body.get("code"),
        "message": body_message or sdk_message,
        "sdk_message": sdk_message,
    }


def response_header(err, name):
    response = getattr(err, "response", None)
    return response.headers.get(name) if response is not None else None


def dump(obj):
    return obj.model_dump(mode="json") if obj is not None else None


def chat():
    raw = client().chat.completions.with_raw_response.create(
        model=env("SLUICE_MODEL"), messages=hello()
    )
    completion = raw.parse()
    choice = completion.choices[0]
    check_text(choice.message.content)
    check_usage(completion.usage)
    return {
        "text": choice.message.content,
        "finish_reason": choice.finish_reason,
        "model": completion.model,
        "usage": dump(completion.usage),
        "sluice_request_id": raw.headers.get("x-sluice-request-id"),
    }


def chat_stream():
    raw = client().chat.completions.with_raw_response.create(
        model=env("SLUICE_MODEL"),
        messages=hello(),
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, finish, chunks, model = "", None, None, 0, None
    for chunk in raw.parse():
        chunks += 1
        model = chunk.model
        for c in chunk.choices:
            text += c.delta.content or ""
            if c.finish_reason:
                finish = c.finish_reason
        if chunk.usage is not None:
            usage = chunk.usage
    check_text(text)
    check_usage(usage)
    if finish != "stop":
        raise Fail(f"finish_reason {finish}, want stop")
    return {
        "text": text,
        "finish_reason": finish,
        "chunks": chunks,
        "model": model,
        "usage": dump(usage),
        "sluice_request_id": raw.headers.get("x-sluice-request-id"),
    }


def chat_stream_tools():
    messages = [
        {
            "role": "user",
            "content": user_text(
                f"What is the weather in Paris? [marker {env('SLUICE_MARKER')}]"
            ),
        }
    ]
    done_events = []
    with client().chat.completions.stream(
        model=env("SLUICE_MODEL"),
        messages=messages,
        tools=[WEATHER_TOOL],
        stream_options={"include_usage": True},
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.done":
                done_events.append(event)
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    calls = choice.message.tool_calls or []
    if not calls:
        raise Fail(f"no tool call in final message: {choice.message!r}")
    call = calls[0]
    if call.type != "function" or call.function.name != "get_weather":
        raise Fail(f"unexpected tool call {call!r}")
    if not call.id:
        raise Fail("tool call without id")
    try:
        args = json.loads(call.function.arguments)
    except ValueError:
        raise Fail(f"tool args not JSON: {call.function.arguments!r}")
    if not isinstance(args.get("city"), str) or not args["city"]:
        raise Fail(f"tool args without city: {call.function.arguments!r}")
    if not done_events or done_events[0].name != "get_weather":
        raise Fail("no tool_calls.function.arguments.done event")
    if choice.finish_reason != "tool_calls":
        raise Fail(f"finish_reason {choice.finish_reason}, want tool_calls")
    return {
        "tool_name": call.function.name,
        "tool_id": call.id,
        "tool_args": args,
        "parsed_arguments": call.function.parsed_arguments,
        "finish_reason": choice.finish_reason,
        "model": completion.model,
        "usage": dump(completion.usage),
    }


def bad_key():
    try:
        client("sk-sluice-invalid").chat.completions.create(
            model=env("SLUICE_MODEL"), messages=hello()
        )
    except openai.AuthenticationError as err:
        if err.status_code != 401:
            raise Fail(f"status {err.status_code}, want 401")
        return {
            "error": type(err).__name__,
            "status": err.status_code,
            "code": err.code,
            "type": err.type,
            "body": err.body,
            "sluice_request_id": err.response.headers.get("x-sluice-request-id"),
        }
    raise Fail("request with an invalid key succeeded")


def chat_expect_error():
    try:
        completion = client().chat.completions.create(
            model=env("SLUICE_MODEL"), messages=hello()
        )
    except openai.APIStatusError as err:
        return {
            **error_summary(err),
            "request_id": response_header(err, "x-sluice-request-id"),
        }
    except openai.OpenAIError as err:
        raise Fail(f"expected an API error with an HTTP status, got {type(err).__name__}: {err}")
    choice = completion.choices[0] if completion.choices else None
    raise Fail(
        f"request succeeded, want an API error: {choice.message if choice else completion!r}"
    )


def chat_stream_expect_error():
    try:
        raw = client().chat.completions.with_raw_response.create(
            model=env("SLUICE_MODEL"),
            messages=hello(),
            stream=True,
            stream_options={"include_usage": True},
        )
    except openai.OpenAIError as err:
        detail = ""
        if isinstance(err, openai.APIStatusError):
            detail = f" (status {err.status_code}, body {json.dumps(err.body)})"
        raise Fail(
            "stream open failed, want HTTP 200 and an error mid-stream: "
            f"{type(err).__name__}: {err}{detail}"
        )
    if raw.status_code != 200:
        raise Fail(f"stream opened with HTTP {raw.status_code}, want 200")
    text, chunks = "", 0
    try:
        for chunk in raw.parse():
            chunks += 1
            for c in chunk.choices or []:
                text += (c.delta.content if c.delta else None) or ""
    except openai.OpenAIError as err:
        summary = error_summary(err)
        return {
            "error_class": summary["error_class"],
            "text_before_error": text,
            "message": summary["message"],
            "status": summary["status"],
            "code": summary["code"],
            "sdk_message": summary["sdk_message"],
            "chunks": chunks,
            "request_id": raw.headers.get("x-sluice-request-id"),
        }
    raise Fail(f"stream ended cleanly, want an error (text {text!r}, {chunks} chunks)")


SCENARIOS = {
    "chat": chat,
    "chat-stream": chat_stream,
    "chat-stream-tools": chat_stream_tools,
    "bad-key": bad_key,
    "chat-expect-error": chat_expect_error,
    "chat-stream-expect-error": chat_stream_expect_error,
}


def main():
    try:
        if SCENARIO not in SCENARIOS:
            raise Fail(f"unknown scenario {SCENARIO!r}; one of: {', '.join(SCENARIOS)}")
        out = SCENARIOS[SCENARIO]()
    except Fail as e:
        print(f"openai_driver.py {SCENARIO}: FAIL: {e}", file=sys.stderr)
        return 1
    except openai.APIStatusError as e:
        print(
            f"openai_driver.py {SCENARIO}: FAIL: {type(e).__name__}: {e} "
            f"(status {e.status_code}, body {json.dumps(e.body)})",
            file=sys.stderr,
        )
        return 1
    except Exception as e:  # noqa: BLE001 - any SDK error is a failure to report
        print(f"openai_driver.py {SCENARIO}: FAIL: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"sdk": SDK, "scenario": SCENARIO, **out}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
