package fakeprovider

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// nodeSDKCheck drives the fake with the official OpenAI Node SDK: its types are only
// compile-time, but its parsers, stream accumulator and helpers run for real, and they
// throw on event sequences or shapes they do not expect. It prints one JSON line.
const nodeSDKCheck = `
import { pathToFileURL } from 'node:url';
const { default: OpenAI } = await import(pathToFileURL(process.env.OPENAI_SDK_DIR + '/index.mjs').href);
const client = new OpenAI({ baseURL: process.env.BASE_URL + '/v1', apiKey: process.env.API_KEY, maxRetries: 0 });
const model = 'gpt-test';
const fn = { type: 'function', name: 'get_weather', parameters: { type: 'object', properties: {} }, strict: false };
const custom = { type: 'custom', name: 'apply_patch' };
const out = {};

const plain = await client.responses.create({ model, input: 'hi' });
out.plain = { text: plain.output_text, status: plain.status, usage: plain.usage };

const stream = await client.responses.create({ model, input: 'hi', stream: true });
let deltas = '', types = [], completed = null;
for await (const ev of stream) {
  types.push(ev.type);
  if (ev.type === 'response.output_text.delta') deltas += ev.delta;
  if (ev.type === 'response.completed') completed = ev.response;
}
out.stream = { deltas, types, completedText: completed?.output?.[0]?.content?.[0]?.text, usage: completed?.usage };

const helper = client.responses.stream({ model, input: 'hi' });
const snapshots = [];
helper.on('response.output_text.delta', (e) => snapshots.push(e.snapshot));
const fin = await helper.finalResponse();
out.helper = { text: fin.output_text, status: fin.status, lastSnapshot: snapshots.at(-1), usage: fin.usage };

const fnStream = client.responses.stream({ model, input: 'weather?', tools: [fn, custom] });
const argSnapshots = [];
fnStream.on('response.function_call_arguments.delta', (e) => argSnapshots.push(e.snapshot));
const fnFin = await fnStream.finalResponse();
out.function = { item: fnFin.output.find((o) => o.type === 'function_call'), lastSnapshot: argSnapshots.at(-1) };

const ctFin = await client.responses.stream({ model, input: 'patch', tools: [fn, custom],
  tool_choice: { type: 'custom', name: 'apply_patch' } }).finalResponse();
out.custom = ctFin.output.find((o) => o.type === 'custom_tool_call');

const emb = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'] });
const embFloat = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['a', 'b'], encoding_format: 'float' });
out.embeddings = { base64Default: emb.data.map((d) => d.embedding), float: embFloat.data.map((d) => d.embedding.map(Math.fround)), usage: emb.usage };

const cmp = await client.responses.compact({ model, input: [{ role: 'user', content: 'hi' }] });
out.compact = { object: cmp.object, types: cmp.output.map((o) => o.type), usage: cmp.usage };

console.log(JSON.stringify(out));
`

// TestOpenAINodeSDK runs nodeSDKCheck against the fake; it is skipped when node or the
// SDK (test/sdk/node, npm ci) is missing.
func TestOpenAINodeSDK(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	sdk, err := filepath.Abs(filepath.Join("..", "..", "test", "sdk", "node", "node_modules", "openai"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(sdk, "index.mjs")); err != nil {
		t.Skip("OpenAI Node SDK not installed (npm ci in test/sdk/node)")
	}
	fake, ts := newTest(t)
	script := filepath.Join(t.TempDir(), "check.mjs")
	if err := os.WriteFile(script, []byte(nodeSDKCheck), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Env = append(os.Environ(), "OPENAI_SDK_DIR="+sdk, "BASE_URL="+ts.URL, "API_KEY="+oaKey)
	stdout, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v\n%s", err, stderr)
	}

	type usage struct {
		InputTokens  int `json:"input_tokens"`
		OutputTokens int `json:"output_tokens"`
		TotalTokens  int `json:"total_tokens"`
	}
	var got struct {
		Plain struct {
			Text, Status string
			Usage        usage
		}
		Stream struct {
			Deltas, CompletedText string
			Types                 []string
			Usage                 usage
		}
		Helper struct {
			Text, Status, LastSnapshot string
			Usage                      usage
		}
		Function struct {
			Item struct {
				Type, Name, Arguments, Status string
				CallID                        string `json:"call_id"`
			}
			LastSnapshot string
		}
		Custom struct {
			Type, Name, Input string
			CallID            string `json:"call_id"`
		}
		Embeddings struct {
			Base64Default, Float [][]float32
			Usage                struct {
				PromptTokens int `json:"prompt_tokens"`
			}
		}
		Compact struct {
			Object string
			Types  []string
			Usage  usage
		}
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("node output %q: %v", stdout, err)
	}
	okUsage := func(u usage) bool {
		return u.InputTokens > 0 && u.OutputTokens > 0 && u.TotalTokens == u.InputTokens+u.OutputTokens
	}
	if got.Plain.Text != DefaultText || got.Plain.Status != "completed" || !okUsage(got.Plain.Usage) {
		t.Errorf("responses.create: %+v", got.Plain)
	}
	if s := got.Stream; s.Deltas != DefaultText || s.CompletedText != DefaultText || !okUsage(s.Usage) ||
		len(s.Types) == 0 || s.Types[0] != "response.created" || s.Types[len(s.Types)-1] != "response.completed" {
		t.Errorf("responses.create stream: %+v", s)
	}
	if h := got.Helper; h.Text != DefaultText || h.Status != "completed" || h.LastSnapshot != DefaultText || !okUsage(h.Usage) {
		t.Errorf("responses.stream().finalResponse(): %+v", h)
	}
	if f := got.Function; f.Item.Type != "function_call" || f.Item.Name != "get_weather" || f.Item.Arguments != ToolArguments ||
		f.Item.CallID == "" || f.LastSnapshot != ToolArguments {
		t.Errorf("function call: %+v", f)
	}
	if c := got.Custom; c.Type != "custom_tool_call" || c.Name != "apply_patch" || c.Input != ToolArguments || c.CallID == "" {
		t.Errorf("custom tool call: %+v", c)
	}
	e := got.Embeddings
	if len(e.Base64Default) != 2 || e.Usage.PromptTokens == 0 {
		t.Fatalf("embeddings: %+v", e)
	}
	for i, key := range []string{"s:a", "s:b"} {
		want := embed(key, EmbeddingDims)
		for _, v := range [][]float32{e.Base64Default[i], e.Float[i]} {
			if len(v) != len(want) {
				t.Fatalf("embedding %d: %v, want %v", i, v, want)
			}
			for j := range v {
				if v[j] != want[j] {
					t.Fatalf("embedding %d: %v, want %v", i, v, want)
				}
			}
		}
	}
	if f := embeddingFormats(fake); fmt.Sprint(f) != "[base64 float]" {
		t.Errorf("embeddings encoding_format %q: the SDK's base64 default went untested", f)
	}
	if c := got.Compact; c.Object != "response.compaction" || len(c.Types) != 2 || c.Types[0] != "message" ||
		c.Types[1] != "compaction" || !okUsage(c.Usage) {
		t.Errorf("responses.compact: %+v", c)
	}
}

// pythonSDKCheck drives the fake with the official OpenAI Python SDK and re-validates
// each parsed object strictly (the SDK itself parses leniently), so a missing required
// field fails. The compaction output is not re-validated: the real API returns user
// messages there, which the SDK's output-item union cannot represent. It prints one
// JSON line.
const pythonSDKCheck = `
import json, os
from openai import OpenAI
from openai.types import CreateEmbeddingResponse
from openai.types.responses import Response

def strict(obj):
    type(obj).model_validate(obj.model_dump(mode="json", exclude_unset=True, warnings=False))
    return obj

c = OpenAI(base_url=os.environ["BASE_URL"] + "/v1", api_key=os.environ["API_KEY"], max_retries=0)
fn = {"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}, "strict": False}
custom = {"type": "custom", "name": "apply_patch"}
out = {}
r = strict(c.responses.create(model="gpt-test", input="hi"))
out["plain"] = r.output_text
r = strict(c.responses.create(model="gpt-test", input="hi", tools=[custom, fn]))
out["custom"] = [r.output[0].type, r.output[0].input]
types, final = [], None
for ev in c.responses.create(model="gpt-test", input="hi", stream=True, tools=[fn]):
    strict(ev)
    types.append(ev.type)
    if ev.type == "response.completed":
        final = ev.response
out["stream"] = {"types": types, "arguments": final.output[0].arguments}
with c.responses.stream(model="gpt-test", input="hi") as s:
    for _ in s:
        pass
    out["helper"] = strict(s.get_final_response()).output_text
e = strict(c.embeddings.create(model="text-embedding-3-small", input=["a", "b"]))
out["embeddings"] = [list(d.embedding) for d in e.data]
cmp = c.responses.compact(model="gpt-test", input=[{"role": "user", "content": "hi"}])
out["compact"] = [cmp.object] + [o.type for o in cmp.output]
print(json.dumps(out))
`

// TestOpenAIPythonSDK runs pythonSDKCheck against the fake; it is skipped when the
// repository's .venv (with the openai package) is missing.
func TestOpenAIPythonSDK(t *testing.T) {
	python, err := filepath.Abs(filepath.Join("..", "..", ".venv", "bin", "python"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(python); err != nil {
		t.Skip("no .venv with the OpenAI Python SDK")
	}
	if exec.Command(python, "-c", "import openai").Run() != nil {
		t.Skip("openai not installed in .venv")
	}
	fake, ts := newTest(t)
	script := filepath.Join(t.TempDir(), "check.py")
	if err := os.WriteFile(script, []byte(pythonSDKCheck), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, script)
	cmd.Env = append(os.Environ(), "BASE_URL="+ts.URL, "API_KEY="+oaKey)
	stdout, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("python: %v\n%s", err, stderr)
	}
	var got struct {
		Plain, Helper string
		Custom        []string
		Stream        struct {
			Types     []string
			Arguments string
		}
		Embeddings [][]float32
		Compact    []string
	}
	if err := json.Unmarshal(stdout, &got); err != nil {
		t.Fatalf("python output %q: %v", stdout, err)
	}
	if got.Plain != DefaultText || got.Helper != DefaultText {
		t.Errorf("output_text: %q, helper %q", got.Plain, got.Helper)
	}
	if fmt.Sprint(got.Custom) != fmt.Sprint([]string{"custom_tool_call", ToolArguments}) {
		t.Errorf("custom tool call: %q", got.Custom)
	}
	if s := got.Stream; s.Arguments != ToolArguments || len(s.Types) == 0 || s.Types[0] != "response.created" ||
		s.Types[len(s.Types)-1] != "response.completed" {
		t.Errorf("stream: %+v", s)
	}
	if want := [][]float32{embed("s:a", EmbeddingDims), embed("s:b", EmbeddingDims)}; fmt.Sprint(got.Embeddings) != fmt.Sprint(want) {
		t.Errorf("embeddings %v, want %v", got.Embeddings, want)
	}
	if f := embeddingFormats(fake); fmt.Sprint(f) != "[base64]" {
		t.Errorf("embeddings encoding_format %q: the base64 path went untested", f)
	}
	if fmt.Sprint(got.Compact) != "[response.compaction message compaction]" {
		t.Errorf("compact: %v", got.Compact)
	}
}

// embeddingFormats returns the encoding_format of each recorded embeddings request.
func embeddingFormats(fake *Server) []string {
	var out []string
	for _, r := range fake.Requests("") {
		if r.Path == "/v1/embeddings" {
			var body struct {
				EncodingFormat string `json:"encoding_format"`
			}
			_ = json.Unmarshal(r.Body, &body)
			out = append(out, body.EncodingFormat)
		}
	}
	return out
}
